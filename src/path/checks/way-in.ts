// The way in, as the build hook walks it: root's ssh config, the key, the name, the TCP
// connection, the host key.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Evidence } from '../../doctor/types.js';
import { fail, pass, warn } from '../../doctor/types.js';
import { addHostKeyAlias, CHECKING_OFF, multiplexing, restoreHostKeyChecking } from '../../ssh/ssh-config.js';
import { editFile, type Step } from '../../plan/plan.js';
import { pinHostKey } from '../../ssh/known-hosts.js';
import { PENALTY_FIX } from '../failures/ssh.js';
import { fingerprint, machinesHostKeyField, parseKeyLine, type HostKey } from '../../ssh/host-key.js';
import { declarativeHome, type DoctorCtx } from '../../doctor/context.js';
import { readOpenSshKey } from '../../ssh/private-key.js';
import { withHostKey } from '../../nix/machines-file.js';
import { reachedAuth } from '../session.js';
import type { PathCheck } from '../check.js';
import { CATALOGUE } from '../catalogue.js';

const first = (g: Map<string, string[]>, k: string) => g.get(k)?.[0];

/**
 * How ssh reaches the builder when not directly: ProxyJump or ProxyCommand from ssh -G
 * ("none" when unset). Then the address and port are the proxy's business, and only the
 * login through ssh tests the way in.
 */
export function proxyOf(g: Map<string, string[]>): string | null {
  for (const k of ['proxyjump', 'proxycommand']) {
    const v = first(g, k);
    if (v && v !== 'none') return `${k === 'proxyjump' ? 'ProxyJump' : 'ProxyCommand'} ${v}`;
  }
  return null;
}

/** The user's own known_hosts file, as ssh -G names it. */
function knownHostsOf(s: { g: Map<string, string[]>; ctx: DoctorCtx }): string {
  const named = (first(s.g, 'userknownhostsfile') ?? '~/.ssh/known_hosts').split(/\s+/)[0]!;
  // A pin in /dev/null is no pin: it goes where ssh looks once checking is back on.
  return (named === '/dev/null' ? '~/.ssh/known_hosts' : named).replace(/^~(?=\/)/, s.ctx.install.user.home);
}

export const wayInChecks: PathCheck[] = [
  {
    id: 'ssh-config',
    title: "root's ssh config for the builder",
    needs: ['uri'],
    tiers: ['doctor'],
    run: async (f) => {
      const c = await f.sshConfig();
      const r = c.run;
      if (!c.ok)
        return fail('ssh -G cannot read the ssh config', r.stderr.trim(), 'fix the ssh config file it names', {
          evidence: [{ command: r.command, output: r.stderr }],
        });
      const proxy = proxyOf(c.g);
      const shown = `HostName ${c.hostName}, Port ${c.port}, User ${first(c.g, 'user')}, IdentityFile ${c.keyPath ?? '(none found)'}${proxy ? `, via ${proxy}` : ''}`;
      // What breaks Nix's protocol however the rest is set: a terminal, or another command.
      // Said in the catalogue's words, which the login's own failure gets (status sees that).
      const tty = (first(c.g, 'requesttty') ?? 'auto').toLowerCase();
      const remote = first(c.g, 'remotecommand');
      const breaks =
        tty === 'yes' || tty === 'force'
          ? { id: 'ssh.pty-refused', setting: `RequestTTY ${tty}` }
          : remote && remote !== 'none'
            ? { id: 'ssh.remote-command', setting: `RemoteCommand ${remote}` }
            : null;
      if (breaks) {
        const e = CATALOGUE.find((x) => x.id === breaks.id)!;
        const n = { name: f.name, user: first(c.g, 'user') ?? null };
        return fail(`${breaks.setting} applies to ${f.name}`, e.cause(n, '', ''), e.fix(n, '', ''), {
          evidence: [{ command: r.command, output: breaks.setting.toLowerCase() }],
        });
      }
      const mux = multiplexing(c.g);
      if (mux) {
        return warn(`${shown}; connection sharing applies to it (${mux})`, {
          cause:
            "Nix's build hook runs its own ssh sessions; a shared master connection that outlives them (ControlPersist) is known to hang builds or break their connections",
          fix: `add "ControlMaster no" and "ControlPath none" to the Host block for ${f.name}, above the Host or Match that turns sharing on (nixremote init writes them)`,
        });
      }
      return pass(shown, {
        evidence: [
          {
            command: r.command,
            output: ['hostname', 'port', 'user', 'identityfile', 'hostkeyalias', 'proxyjump', 'identitiesonly']
              .map((k) => `${k} ${(c.g.get(k) ?? ['(unset)']).join(', ')}`)
              .join('\n'),
          },
        ],
      });
    },
  },
  {
    id: 'key',
    title: 'ssh key',
    needs: ['ssh-config'],
    tiers: ['doctor'],
    run: async (f) => {
      const k = (await f.sshConfig()).keyPath;
      const s = f;
      if (!k)
        return warn('no key file: neither the machine line nor ssh config names one that exists', {
          cause: 'ssh will try its default keys of the build user',
          fix: 'set the 3rd field of the machine line, or IdentityFile in the Host block',
        });
      if (k.startsWith('/nix/store/'))
        return fail(
          `${k} is in the Nix store`,
          'everything in /nix/store is world-readable, so the private key is not private',
          'move the key outside the store and point the machine line at it',
        );
      const st = s.ctx.stat(k);
      if (!st)
        return fail(
          `${k} does not exist`,
          `the machine line or ssh config names ${k}, which is missing`,
          `make it (nixremote init), or fix the path (${s.machine.source.file}:${s.machine.source.line})`,
        );
      const uid = f.ctx.install.multiUser ? 0 : f.ctx.install.user.uid;
      if (st.uid !== uid)
        return fail(
          `${k} is owned by uid ${st.uid}`,
          `ssh runs as uid ${uid} and refuses a key it does not own`,
          `chown ${uid} ${k}`,
        );
      if (st.mode & 0o077) {
        return fail(
          `${k} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}`,
          'ssh ignores a private key that others can read ("UNPROTECTED PRIVATE KEY FILE")',
          `chmod 600 ${k}`,
          {
            action: {
              description: `chmod 600 ${k}`,
              steps: [{ kind: 'command', title: `chmod 600 ${k}`, run: async () => fs.chmodSync(k, 0o600) }],
            },
          },
        );
      }
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      // A key in OpenSSH's own format is read here; others (PEM) are left to ssh-keygen.
      const own = readOpenSshKey(s.ctx.read(k) ?? '');
      if (own && own.cipher !== 'none')
        return fail(
          `${k} has a passphrase`,
          'the nix-daemon has no terminal or agent to unlock it',
          'use a key without a passphrase (nixremote init makes one)',
          { evidence: [{ command: `read ${k}`, output: `private part encrypted with ${own.cipher}` }] },
        );
      const r = own ? null : await s.ctx.exec('ssh-keygen', ['-y', '-P', '', '-f', k]);
      if (r && r.exitCode !== 0) {
        if (/passphrase/i.test(r.stderr))
          return fail(
            `${k} has a passphrase`,
            'the nix-daemon has no terminal or agent to unlock it',
            'use a key without a passphrase (nixremote init makes one)',
            { evidence: [{ command: r.command, output: r.stderr }] },
          );
        return fail(`ssh-keygen cannot read ${k}`, r.stderr.trim(), 'replace the key', {
          evidence: [{ command: r.command, output: r.stderr }],
        });
      }
      const pub = s.ctx.read(`${k}.pub`);
      const derived = own ? own.publicKey : parseKeyLine(r?.stdout.trim() ?? '');
      if (pub !== null && derived && parseKeyLine(pub.trim())?.base64 !== derived.base64) {
        return warn(`${k}.pub does not match ${k}`, {
          cause: 'the .pub beside the key belongs to another key, so copying it to the builder would not help',
          fix: `ssh-keygen -y -f ${k} > ${k}.pub`,
        });
      }
      return pass(`${k}: mode ${mode}, no passphrase`);
    },
  },
  {
    id: 'dns',
    title: 'name resolves',
    needs: ['ssh-config'],
    tiers: ['doctor'],
    run: async (f) => {
      const c = await f.sshConfig();
      const proxy = proxyOf(c.g);
      if (proxy) return pass(`reached through ${proxy}; not resolved here`);
      if (/^[\d.]+$|:/.test(c.hostName)) return pass(`${c.hostName} is an address`);
      try {
        const addrs = await f.ctx.resolve(c.hostName);
        return pass(`${c.hostName} → ${addrs.join(', ')}`);
      } catch (e) {
        return fail(
          `${c.hostName} does not resolve`,
          (e as Error).message,
          `fix DNS or /etc/hosts, or set HostName to an address in the Host block for ${f.name}`,
        );
      }
    },
  },
  {
    id: 'tcp',
    title: 'TCP connection',
    needs: ['dns'],
    tiers: ['doctor'],
    run: async (f) => {
      const c = await f.sshConfig();
      if (proxyOf(c.g)) return pass('through a proxy: checked by the login below');
      const r = await f.ctx.tcp(c.hostName, c.port, 5000);
      if (r.ok) return pass(`${c.hostName}:${c.port} answers (${r.ms} ms)`);
      const where = `${c.hostName}:${c.port}`;
      if (r.code === 'ECONNREFUSED')
        return fail(
          `${where} refused the connection`,
          'nothing listens there: sshd is stopped, or the port is wrong',
          `start sshd on the builder (systemctl start sshd), or fix Port in the Host block for ${f.name}`,
        );
      // Without ConnectTimeout ssh waits as long as the kernel's TCP connect does (about two
      // minutes on Linux), and the build hook pays that for every derivation it tries here.
      const unbounded = (c.g.get('connecttimeout')?.[0] ?? 'none') === 'none';
      const bound = unbounded
        ? `; and give ${f.name}'s Host block a ConnectTimeout (init writes 10): without one each build waits about two minutes for it before the next builder is tried (nixremote disable ${f.name} takes it out meanwhile)`
        : '';
      if (r.code === 'ETIMEDOUT')
        return fail(
          `${where} did not answer within 5 s`,
          'the builder is down or a firewall drops the packets',
          `check that the builder is up and the port is open${bound}`,
        );
      if (r.code === 'EHOSTUNREACH' || r.code === 'ENETUNREACH')
        return fail(
          `${where} is unreachable`,
          'there is no route to the builder',
          `check the network or VPN between the machines${bound}`,
        );
      return fail(`${where}: ${r.message}`, r.message, 'check the address and the network');
    },
  },
  {
    id: 'host-key',
    title: 'host key',
    needs: ['tcp'],
    tiers: ['doctor'],
    run: async (f) => {
      const c = await f.sshConfig();
      const s = { ...c, ctx: f.ctx, name: f.name, pinned: f.pinned, machine: f.machine };
      if (proxyOf(c.g)) return pass('through a proxy: checked by the login below');
      const alias = first(c.g, 'hostkeyalias');
      // With HostKeyAlias ssh looks the key up under the alias; otherwise under the host
      // name, as [name]:port for a port other than 22 (sshconnect.c, get_hostfile_hostname_ipaddr).
      const lookup = alias && alias !== 'none' ? alias : s.port === 22 ? s.hostName : `[${s.hostName}]:${s.port}`;
      // The usual case, a pinned key looked up under the name Nix writes it: the login with
      // only that key acceptable checks it. Anything else is looked at below, which names
      // what is wrong.
      if (s.pinned && lookup === s.name && reachedAuth(await f.pinnedLogin())) {
        return pass(`${fingerprint(s.pinned)}, pinned on the machine line and used under ${lookup}`);
      }
      let actual: HostKey;
      try {
        actual = await s.ctx.hostKey(s.hostName, s.port);
      } catch (e) {
        if ((e as { kind?: string }).kind === 'dropped') {
          const refused = /Not allowed at this time|Exceeded MaxStartups/.exec((e as Error).message);
          return fail(
            `${s.hostName}:${s.port} ${refused ? `refused this address ("${refused[0]}")` : 'closed the connection before the SSH banner'}`,
            (e as Error).message,
            PENALTY_FIX,
          );
        }
        return fail(
          `${s.hostName}:${s.port} did not complete an SSH handshake`,
          (e as Error).message,
          'check that the port belongs to sshd',
        );
      }
      const fp = fingerprint(actual);
      if (s.pinned) {
        if (s.pinned.base64 !== actual.base64) {
          const file = s.machine.source.file;
          const edited = withHostKey(s.ctx.read(file) ?? '', s.machine.source.line, actual);
          const old = `${s.pinned.type} ${fingerprint(s.pinned)}`;
          const home = declarativeHome(s.ctx);
          if (home) {
            return fail(
              `the machine line pins ${fingerprint(s.pinned)}, the builder shows ${fp}`,
              'the builder was reinstalled or its host key changed, or this is another machine',
              `after checking ${fp} on the builder (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub there): set publicHostKey = "${machinesHostKeyField(actual)}" for ${s.name} in ${home}, and programs.ssh.knownHosts."${s.name}".publicKey = "${actual.type} ${actual.base64}"`,
            );
          }
          return fail(
            `the machine line pins ${fingerprint(s.pinned)}, the builder shows ${fp}`,
            'the builder was reinstalled or its host key changed, or this is another machine',
            `after checking ${fp} on the builder (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub there): nixremote doctor --fix, or put base64 of its "${actual.type} ..." key in the 8th field (${file}:${s.machine.source.line})`,
            edited === null
              ? {}
              : {
                  action: {
                    description: `pin ${actual.type} ${fp} for ${s.name} in ${file} and in ${knownHostsOf(s)}`,
                    confirm: `${s.name} is pinned as ${old}, but now shows ${actual.type} ${fp}. Check the new one on the builder first. Replace the pinned key?`,
                    steps: [
                      editFile(`Pin the new key on ${s.name}'s machine line`, file, s.ctx.read(file), edited),
                      // ssh NAME outside Nix uses known_hosts under the same alias.
                      pinStep(s.ctx.read, knownHostsOf(s), s.name, actual),
                    ],
                  },
                },
          );
        }
        if (lookup !== s.name) {
          const home = declarativeHome(s.ctx);
          const config = home ? 'programs.ssh.extraConfig' : path.join(s.ctx.install.user.home, '.ssh', 'config');
          const edited = addHostKeyAlias(s.ctx.read(config) ?? '', s.name);
          return fail(
            `the pinned key is looked up as "${lookup}", but Nix writes it under "${s.name}"`,
            `Nix puts the 8th field into a known_hosts file under the store URI's host (${s.name}); ssh looks for ${lookup}, finds nothing, and Nix says only "remote machines may not have all required system features"`,
            `add "HostKeyAlias ${s.name}" to the Host block for ${s.name} in ${config}`,
            edited === null || home
              ? {}
              : {
                  action: {
                    description: `add "HostKeyAlias ${s.name}" under "Host ${s.name}" in ${config}`,
                    steps: [
                      editFile(`HostKeyAlias for ${s.name}`, config, s.ctx.read(config), edited, { mode: 0o600 }),
                    ],
                  },
                },
          );
        }
        return pass(`${fp}, pinned on the machine line and used under ${lookup}`);
      }
      const files = [
        ...(s.g.get('userknownhostsfile')?.join(' ').split(/\s+/) ?? []),
        ...(s.g.get('globalknownhostsfile')?.join(' ').split(/\s+/) ?? []),
      ];
      const known: HostKey[] = [];
      const ev: Evidence[] = [];
      for (const f of files) {
        if (!s.ctx.stat(f)) continue;
        const r = await s.ctx.exec('ssh-keygen', ['-F', lookup, '-f', f]);
        ev.push({ command: r.command, output: r.stdout.trim() || '(not found)' });
        for (const line of r.stdout.split('\n')) {
          if (line.startsWith('#') || !line.trim()) continue;
          const k = parseKeyLine(line.slice(line.search(/\s/)));
          if (k) known.push(k);
        }
      }
      if (known.some((k) => k.base64 === actual.base64)) return pass(`${fp}, known as ${lookup}`, { evidence: ev });
      const userFile = knownHostsOf(s);
      const pin = {
        description: `pin ${actual.type} ${fp} for ${lookup} in ${userFile}`,
        confirm: `The builder ${s.name} shows ${actual.type} ${fp}. Check it on the builder (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub). Trust it?`,
        steps: [pinStep(s.ctx.read, userFile, lookup, actual)],
      };
      const changed = known.some((k) => k.type === actual.type);
      const checking = (first(c.g, 'stricthostkeychecking') ?? 'ask').toLowerCase();
      if (CHECKING_OFF.has(checking) && (checking !== 'accept-new' || !changed)) {
        // ssh connects anyway, and so do Nix's builds: a risk to name, not a broken link.
        const config = path.join(s.ctx.install.user.home, '.ssh', 'config');
        const restored = restoreHostKeyChecking(s.ctx.read(config) ?? '', s.name);
        const devNull = (s.g.get('userknownhostsfile') ?? [])
          .join(' ')
          .split(/\s+/)
          .every((f) => f === '/dev/null');
        const setting = `StrictHostKeyChecking ${checking === 'accept-new' ? 'accept-new' : 'no'}${devNull ? ', UserKnownHostsFile /dev/null' : ''}`;
        const where = restored.removed.length
          ? `${config} line ${restored.removed.join(', ')}`
          : `the ssh config (not in a Host block of ${s.name}'s own)`;
        return warn(
          `host key checking is off for ${s.name} (${setting}): ssh accepts ${changed ? `the key it now shows, ${fp}, although ${lookup} is pinned as another` : `whatever key ${s.hostName}:${s.port} shows`}`,
          {
            cause: `builds go to whoever answers on that address (a wrong DNS answer, a machine in the middle), and their outputs come back into this store as trusted`,
            fix: `check ${fp} on the builder (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then: nixremote doctor --fix pins it in ${userFile} and takes ${setting} out of ${where}`,
            evidence: ev,
            action: {
              description: `pin ${actual.type} ${fp} for ${lookup} in ${userFile}${restored.removed.length ? ` and remove ${config} line ${restored.removed.join(', ')} (${setting})` : ''}`,
              confirm: `${s.name} shows ${actual.type} ${fp}. Check it on the builder first (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub). Pin it and turn host key checking back on for ${s.name}?`,
              steps: [
                ...pin.steps,
                ...(restored.removed.length
                  ? [
                      editFile(
                        `Turn host key checking back on for ${s.name}`,
                        config,
                        s.ctx.read(config),
                        restored.text,
                        { mode: 0o600 },
                      ),
                    ]
                  : []),
              ],
            },
          },
        );
      }
      if (changed) {
        const old = known
          .filter((k) => k.type === actual.type)
          .map(fingerprint)
          .join(', ');
        return fail(
          `the builder shows ${fp}, but ${lookup} is pinned as ${old}`,
          'the host key changed: the builder was reinstalled, or this is another machine; ssh refuses to connect',
          `after checking ${fp} on the builder: nixremote doctor --fix (shows both and asks)`,
          {
            evidence: ev,
            action: {
              ...pin,
              confirm: `${lookup} is pinned as ${old}, the builder now shows ${actual.type} ${fp}. Replace the pinned key? (check it on the builder first)`,
            },
          },
        );
      }
      return fail(
        `${lookup} is not in ${files.join(' or ')}`,
        "the build user's ssh has never been told this builder's host key, and in batch mode it will not ask",
        `pin it after checking ${fp} on the builder: nixremote doctor --fix, or nixremote init`,
        { evidence: ev, action: pin },
      );
    },
  },
];

/** Pin `key` for `name` in a known_hosts file, as a plan step. */
function pinStep(read: (p: string) => string | null, file: string, name: string, key: HostKey): Step {
  const before = read(file);
  return editFile(
    `Pin ${key.type} ${fingerprint(key)} for ${name}`,
    file,
    before,
    pinHostKey(before ?? '', name, key).text,
    { dirMode: 0o700 },
  );
}
