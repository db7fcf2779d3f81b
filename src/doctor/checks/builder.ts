// The checks for one builder, in the order the Nix daemon's build hook meets them: the
// machine line, root's ssh config, the key, the network, the host key, the login, the
// shell, the remote Nix, what the builder can build, trust, the store ping, and a real
// build. Each observes; none guesses.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DoctorCtx } from '../context.js';
import type { Check, Evidence } from '../types.js';
import { fail, pass, warn } from '../types.js';
import { formatMachineLine, uriHost, withRemoteProgram, type ParsedMachine } from '../../nix/machines-file.js';
import { addHostKeyAlias, parseSshG } from '../../ssh/ssh-config.js';
import { writeAtomic } from '../../io/files.js';
import { fingerprint, hostKeyFromMachinesField, keyLine, parseKeyLine, type HostKey } from '../../ssh/host-key.js';
import { envWithoutAgent, startupFileFor } from '../../ssh/system-ssh.js';
import { classifySshError } from '../../ssh/ssh-errors.js';
import { decodeProtocolError, explainBuild } from '../../nix/build-errors.js';
import { asShCommand, parseProbe, PROBE_SCRIPT, type ProbeResult } from '../../remote/scripts.js';
import { parseNixVersion, parseStorePing, storePingArgs, formatVersion } from '../../nix/version.js';
import { PROBE_NIX } from '../../init/prove.js';
import { randomBytes } from 'node:crypto';

export interface BuilderState {
  ctx: DoctorCtx;
  machine: ParsedMachine;
  /** The host part of the store URI: what ssh is given and what Nix pins the key under. */
  name: string;
  /** user@host or host, as Nix passes it to ssh. */
  target: string;
  scheme: string;
  remoteProgram: string | null;
  g: Map<string, string[]>;
  hostName: string;
  port: number;
  keyPath: string | null;
  pinned: HostKey | null;
  tmpDir: string;
  authStdout: string;
  probe: ProbeResult | null;
}

export function builderState(ctx: DoctorCtx, machine: ParsedMachine): BuilderState {
  const uri = machine.uri;
  const scheme = uri.includes('://') ? uri.slice(0, uri.indexOf('://')) : 'ssh';
  const rest = uri.includes('://') ? uri.slice(uri.indexOf('://') + 3) : uri;
  const [authority, query = ''] = rest.split('?');
  const params = new URLSearchParams(query);
  return {
    ctx,
    machine,
    name: uriHost(uri),
    target: authority!,
    scheme,
    remoteProgram: params.get('remote-program'),
    g: new Map(),
    hostName: uriHost(uri),
    port: 22,
    keyPath: machine.sshKey,
    pinned: null,
    tmpDir: '',
    authStdout: '',
    probe: null,
  };
}

const first = (s: BuilderState, k: string) => s.g.get(k)?.[0];

/**
 * ssh as the build hook runs it (src/libstore/ssh.cc): -x -a, the machine's key, its
 * pinned host key. The first login also opens a control master that the later checks'
 * commands reuse, so they cost a round trip instead of a handshake each; the store ping
 * and the build go through Nix's own ssh, unshared.
 */
function sshArgs(s: BuilderState, command: string[]): string[] {
  const args = ['-x', '-a', '-o', 'BatchMode=yes', '-o', 'ControlMaster=auto', '-o', `ControlPath=${path.join(s.tmpDir, 'cm')}`, '-o', 'ControlPersist=120'];
  if (s.machine.sshKey) args.push('-i', s.machine.sshKey);
  if (s.pinned) args.push('-o', `UserKnownHostsFile=${pinnedFile(s)}`);
  return [...args, '--', s.target, ...command];
}

function pinnedFile(s: BuilderState): string {
  const f = path.join(s.tmpDir, 'host-key');
  if (!fs.existsSync(f)) fs.writeFileSync(f, `${s.name} ${keyLine(s.pinned!)}\n`);
  return f;
}

async function ssh(s: BuilderState, command: string[], timeoutMs = 30_000) {
  const r = await s.ctx.exec('ssh', sshArgs(s, command), { env: envWithoutAgent(), timeoutMs });
  const ev: Evidence = { command: r.command, output: (r.stdout + r.stderr).trim().slice(0, 2000) || `(no output, exit ${r.exitCode})` };
  return { ...r, ev };
}

const remoteCommand = (s: BuilderState) => s.remoteProgram ?? (s.scheme === 'ssh-ng' ? 'nix-daemon' : 'nix-store');

export function builderChecks(withDrv = false): Check<BuilderState>[] {
  const all: Check<BuilderState>[] = [
    {
      id: 'uri',
      title: 'store URI',
      needs: [],
      run: async (s) => {
        if (s.scheme !== 'ssh' && s.scheme !== 'ssh-ng') {
          return fail(`${s.machine.uri} is not an ssh:// or ssh-ng:// store`, 'nixremote checks builders reached over ssh', 'use ssh://HOST or ssh-ng://HOST');
        }
        s.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-doctor-'));
        if (s.machine.hostKey) {
          const k = hostKeyFromMachinesField(s.machine.hostKey);
          if (!k) {
            return fail(
              'the 8th field (host key) does not decode to a public key',
              `Nix base64-decodes that field and writes it as the known host key; "${s.machine.hostKey.slice(0, 24)}..." is not one`,
              `replace it with the output of: base64 -w0 of the builder's /etc/ssh/ssh_host_ed25519_key.pub (${s.machine.source.file}:${s.machine.source.line})`,
            );
          }
          s.pinned = k;
        }
        return pass(`${s.machine.uri} (${s.machine.source.file}:${s.machine.source.line})`);
      },
    },
    {
      id: 'ssh-config',
      title: "root's ssh config for the builder",
      needs: ['uri'],
      run: async (s) => {
        const r = await s.ctx.exec('ssh', ['-G', '--', s.target]);
        if (r.exitCode !== 0) return fail('ssh -G cannot read the ssh config', r.stderr.trim(), 'fix the ssh config file it names', { evidence: [{ command: r.command, output: r.stderr }] });
        s.g = parseSshG(r.stdout);
        s.hostName = first(s, 'hostname') ?? s.name;
        s.port = Number(first(s, 'port') ?? 22);
        if (!s.keyPath) s.keyPath = (s.g.get('identityfile') ?? []).find((f) => s.ctx.stat(f)?.isFile) ?? null;
        const proxy = first(s, 'proxyjump') ?? first(s, 'proxycommand');
        const shown = `HostName ${s.hostName}, Port ${s.port}, User ${first(s, 'user')}, IdentityFile ${s.keyPath ?? '(none found)'}${proxy && proxy !== 'none' ? `, via ${proxy}` : ''}`;
        return pass(shown, { evidence: [{ command: r.command, output: ['hostname', 'port', 'user', 'identityfile', 'hostkeyalias', 'proxyjump', 'identitiesonly'].map((k) => `${k} ${(s.g.get(k) ?? ['(unset)']).join(', ')}`).join('\n') }] });
      },
    },
    {
      id: 'key',
      title: 'ssh key',
      needs: ['ssh-config'],
      run: async (s) => {
        const k = s.keyPath;
        if (!k) return warn('no key file: neither the machine line nor ssh config names one that exists', { cause: "ssh will try its default keys of the build user", fix: 'set the 3rd field of the machine line, or IdentityFile in the Host block' });
        if (k.startsWith('/nix/store/')) return fail(`${k} is in the Nix store`, 'everything in /nix/store is world-readable, so the private key is not private', 'move the key outside the store and point the machine line at it');
        const st = s.ctx.stat(k);
        if (!st) return fail(`${k} does not exist`, `the machine line or ssh config names ${k}, which is missing`, `make it (nixremote init), or fix the path (${s.machine.source.file}:${s.machine.source.line})`);
        const uid = s.ctx.install.multiUser ? 0 : s.ctx.install.user.uid;
        if (st.uid !== uid) return fail(`${k} is owned by uid ${st.uid}`, `ssh runs as uid ${uid} and refuses a key it does not own`, `chown ${uid} ${k}`);
        if (st.mode & 0o077) {
          return fail(`${k} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}`, 'ssh ignores a private key that others can read ("UNPROTECTED PRIVATE KEY FILE")', `chmod 600 ${k}`, {
            action: { description: `chmod 600 ${k}`, apply: async () => fs.chmodSync(k, 0o600) },
          });
        }
        const r = await s.ctx.exec('ssh-keygen', ['-y', '-P', '', '-f', k]);
        if (r.exitCode !== 0) {
          if (/passphrase/i.test(r.stderr)) return fail(`${k} has a passphrase`, 'the nix-daemon has no terminal or agent to unlock it', 'use a key without a passphrase (nixremote init makes one)', { evidence: [{ command: r.command, output: r.stderr }] });
          return fail(`ssh-keygen cannot read ${k}`, r.stderr.trim(), 'replace the key', { evidence: [{ command: r.command, output: r.stderr }] });
        }
        const pub = s.ctx.read(`${k}.pub`);
        const derived = parseKeyLine(r.stdout.trim());
        if (pub !== null && derived && parseKeyLine(pub.trim())?.base64 !== derived.base64) {
          return warn(`${k}.pub does not match ${k}`, { cause: 'the .pub beside the key belongs to another key, so copying it to the builder would not help', fix: `ssh-keygen -y -f ${k} > ${k}.pub` });
        }
        return pass(`${k}: mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, no passphrase`);
      },
    },
    {
      id: 'dns',
      title: 'name resolves',
      needs: ['ssh-config'],
      run: async (s) => {
        const proxy = first(s, 'proxyjump');
        if (proxy && proxy !== 'none') return pass(`reached through ProxyJump ${proxy}; not resolved here`);
        if (/^[\d.]+$|:/.test(s.hostName)) return pass(`${s.hostName} is an address`);
        try {
          const addrs = await s.ctx.resolve(s.hostName);
          return pass(`${s.hostName} → ${addrs.join(', ')}`);
        } catch (e) {
          return fail(`${s.hostName} does not resolve`, (e as Error).message, `fix DNS or /etc/hosts, or set HostName to an address in the Host block for ${s.name}`);
        }
      },
    },
    {
      id: 'tcp',
      title: 'TCP connection',
      needs: ['dns'],
      run: async (s) => {
        const proxy = first(s, 'proxyjump');
        if (proxy && proxy !== 'none') return pass('through a proxy: checked by the login below');
        const r = await s.ctx.tcp(s.hostName, s.port, 5000);
        if (r.ok) return pass(`${s.hostName}:${s.port} answers (${r.ms} ms)`);
        const where = `${s.hostName}:${s.port}`;
        if (r.code === 'ECONNREFUSED') return fail(`${where} refused the connection`, 'nothing listens there: sshd is stopped, or the port is wrong', `start sshd on the builder (systemctl start sshd), or fix Port in the Host block for ${s.name}`);
        if (r.code === 'ETIMEDOUT') return fail(`${where} did not answer within 5 s`, 'the builder is down or a firewall drops the packets', 'check that the builder is up and the port is open');
        if (r.code === 'EHOSTUNREACH' || r.code === 'ENETUNREACH') return fail(`${where} is unreachable`, 'there is no route to the builder', 'check the network or VPN between the machines');
        return fail(`${where}: ${r.message}`, r.message, 'check the address and the network');
      },
    },
    {
      id: 'host-key',
      title: 'host key',
      needs: ['tcp'],
      run: async (s) => {
        const proxy = first(s, 'proxyjump');
        if (proxy && proxy !== 'none') return pass('through a proxy: checked by the login below');
        let actual: HostKey;
        try {
          actual = await s.ctx.hostKey(s.hostName, s.port);
        } catch (e) {
          return fail(`${s.hostName}:${s.port} did not complete an SSH handshake`, (e as Error).message, 'check that the port belongs to sshd');
        }
        const fp = fingerprint(actual);
        const alias = first(s, 'hostkeyalias');
        // With HostKeyAlias ssh looks the key up under the alias; otherwise under the host
        // name, as [name]:port for a port other than 22 (sshconnect.c, get_hostfile_hostname_ipaddr).
        const lookup = alias && alias !== 'none' ? alias : s.port === 22 ? s.hostName : `[${s.hostName}]:${s.port}`;
        if (s.pinned) {
          if (s.pinned.base64 !== actual.base64) {
            return fail(
              `the machine line pins ${fingerprint(s.pinned)}, the builder shows ${fp}`,
              'the builder was reinstalled or its host key changed, or this is another machine',
              `after checking ${fp} on the builder, put base64 of its "${actual.type} ..." key in the 8th field (${s.machine.source.file}:${s.machine.source.line}), or re-run nixremote init`,
            );
          }
          if (lookup !== s.name) {
            const config = path.join(s.ctx.install.user.home, '.ssh', 'config');
            const edited = addHostKeyAlias(s.ctx.read(config) ?? '', s.name);
            return fail(
              `the pinned key is looked up as "${lookup}", but Nix writes it under "${s.name}"`,
              `Nix puts the 8th field into a known_hosts file under the store URI's host (${s.name}); ssh looks for ${lookup}, finds nothing, and Nix says only "remote machines may not have all required system features"`,
              `add "HostKeyAlias ${s.name}" to the Host block for ${s.name} in ${config}`,
              edited === null ? {} : { action: { description: `add "HostKeyAlias ${s.name}" under "Host ${s.name}" in ${config}`, apply: async () => writeFileKeepingMode(config, edited) } },
            );
          }
          return pass(`${fp}, pinned on the machine line and used under ${lookup}`);
        }
        const files = [...(s.g.get('userknownhostsfile')?.join(' ').split(/\s+/) ?? []), ...(s.g.get('globalknownhostsfile')?.join(' ').split(/\s+/) ?? [])];
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
        const userFile = (s.g.get('userknownhostsfile')?.[0] ?? '~/.ssh/known_hosts').split(/\s+/)[0]!;
        const pin = {
          description: `pin ${actual.type} ${fp} for ${lookup} in ${userFile}`,
          confirm: `The builder ${s.name} shows ${actual.type} ${fp}. Check it on the builder (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub). Trust it?`,
          apply: async () => {
            const { pinHostKey } = await import('../../ssh/known-hosts.js');
            const text = s.ctx.read(userFile) ?? '';
            writeAtomic(userFile, pinHostKey(text, lookup, actual).text, { mode: 0o644, dirMode: 0o700 });
          },
        };
        if (known.some((k) => k.type === actual.type)) {
          const old = known.filter((k) => k.type === actual.type).map(fingerprint).join(', ');
          return fail(`the builder shows ${fp}, but ${lookup} is pinned as ${old}`, 'the host key changed: the builder was reinstalled, or this is another machine; ssh refuses to connect', `after checking ${fp} on the builder: nixremote doctor --fix (shows both and asks)`, {
            evidence: ev,
            action: { ...pin, confirm: `${lookup} is pinned as ${old}, the builder now shows ${actual.type} ${fp}. Replace the pinned key? (check it on the builder first)` },
          });
        }
        return fail(`${lookup} is not in ${files.join(' or ')}`, "the build user's ssh has never been told this builder's host key, and in batch mode it will not ask", `pin it after checking ${fp} on the builder: nixremote doctor --fix, or nixremote init`, { evidence: ev, action: pin });
      },
    },
    {
      id: 'login',
      title: 'login with the key, as Nix does',
      needs: ['host-key', 'key'],
      run: async (s) => {
        const r = await ssh(s, ['true']);
        s.authStdout = r.stdout;
        if (r.exitCode === 0) return pass(`ssh ${s.target} true works`, { evidence: [r.ev] });
        const f = classifySshError(r.stderr);
        const fixes: Record<string, string> = {
          auth: `add the public key to ~${first(s, 'user')}/.ssh/authorized_keys on the builder (nixremote init --copy-key password)`,
          'hostkey-unknown': 'pin the host key: nixremote doctor --fix',
          'hostkey-changed': 'check the new key on the builder, then: nixremote doctor --fix',
          refused: 'start sshd on the builder',
          dropped: 'raise MaxStartups in the builder\'s sshd_config, or check fail2ban/sshguard there',
          'key-perms': `chmod 600 ${s.keyPath}`,
          'too-many-keys': `add "IdentitiesOnly yes" to the Host block for ${s.name}`,
        };
        return fail(`ssh ${s.target} true failed (exit ${r.exitCode})`, f.cause, fixes[f.kind] ?? 'see the evidence', { evidence: [r.ev] });
      },
    },
    {
      id: 'shell',
      title: 'silent shell',
      needs: ['login'],
      run: async (s) => {
        if (s.authStdout === '') return pass('`true` prints nothing on stdout');
        const shell = /NIXREMOTE:shell=(.*)/.exec((await ssh(s, [asShCommand('echo "NIXREMOTE:shell=$SHELL"')])).stdout)?.[1] ?? null;
        // Show what Nix itself makes of it, decoded back to the text.
        const ping = await storePing(s);
        const nixSays = ping && ping.r.exitCode !== 0 ? decodeProtocolError(ping.r.stderr) : null;
        return fail(
          `ssh ${s.target} true printed ${JSON.stringify(s.authStdout.slice(0, 200))}`,
          "Nix speaks its protocol over that stdout, and text printed by the builder's shell corrupts it" +
            (nixSays !== null ? `: Nix's error quotes ${JSON.stringify(nixSays)}, which is that text` : ' ("protocol mismatch" or "serialised integer ... is too large")'),
          `make ${startupFileFor(shell)} print nothing for non-interactive shells (e.g. wrap it in: [ -t 0 ] && ...)`,
          { evidence: ping ? [ping.ev] : [] },
        );
      },
    },
    {
      id: 'remote-nix',
      title: 'Nix on the builder',
      needs: ['shell'],
      run: async (s) => {
        const probeRun = await ssh(s, [asShCommand(PROBE_SCRIPT)]);
        s.probe = parseProbe(probeRun.stdout);
        const prog = remoteCommand(s);
        const r = await ssh(s, [prog, '--version']);
        if (r.exitCode === 0) {
          return pass(`${prog}: ${r.stdout.trim().split('\n')[0]}`, { evidence: [r.ev] });
        }
        const found = s.probe.nixStoreFound;
        if (found && !s.remoteProgram) {
          const wanted = s.scheme === 'ssh-ng' ? found.replace(/nix-store$/, 'nix-daemon') : found;
          const file = s.machine.source.file;
          const edited = withRemoteProgram(s.ctx.read(file) ?? '', s.machine.source.line, wanted);
          return fail(`${prog} is not on the builder's non-interactive PATH`, `the shell Nix's ssh gets does not have ${prog} on PATH (exit ${r.exitCode}), but it is at ${found}`, `use ${s.scheme}://${s.target}?remote-program=${wanted} as the store URI (${file}:${s.machine.source.line})`, {
            evidence: [r.ev],
            ...(edited === null ? {} : { action: { description: `add ?remote-program=${wanted} to ${s.name}'s store URI in ${file}`, apply: async () => writeFileKeepingMode(file, edited) } }),
          });
        }
        return fail(`${prog} --version failed on the builder (exit ${r.exitCode})`, r.exitCode === 127 ? `${prog} is not installed or not on the builder's non-interactive PATH` : r.stderr.trim().split('\n').pop() ?? '', 'install Nix on the builder, or put it on the PATH its non-interactive shell gets', { evidence: [r.ev] });
      },
    },
    {
      id: 'capabilities',
      title: 'systems and features',
      needs: ['remote-nix'],
      run: async (s) => {
        const p = s.probe!;
        const m = s.machine;
        const problems: string[] = [];
        const remoteSystems = [p.system, ...p.extraPlatforms].filter((x): x is string => !!x);
        if (p.system) {
          const missing = m.systems.filter((x) => !remoteSystems.includes(x));
          if (missing.length) problems.push(`claims ${missing.join(', ')}, but the builder's Nix builds ${remoteSystems.join(', ')}`);
        }
        if (p.systemFeatures) {
          const claimed = [...m.supportedFeatures, ...m.mandatoryFeatures];
          const missing = claimed.filter((f) => !p.systemFeatures!.includes(f));
          if (missing.length) problems.push(`claims feature ${missing.join(', ')}, which the builder's system-features (${p.systemFeatures.join(' ') || 'none'}) lack`);
        }
        if ([...m.supportedFeatures, ...m.mandatoryFeatures].includes('kvm') && !p.kvm) problems.push('claims kvm, but the builder has no /dev/kvm');
        const line = `${m.source.file}:${m.source.line}`;
        if (problems.length) {
          return fail(problems.join('; '), 'derivations sent for what the builder cannot do fail there, and the ones it could do may never be sent', `make the systems and features on the machine line (${line}) match the builder: systems ${remoteSystems.join(',') || '?'}, features ${(p.systemFeatures ?? []).filter((f) => f !== 'kvm' || p.kvm).join(',') || '-'}`);
        }
        if (m.mandatoryFeatures.length) {
          return warn(`mandatory features ${m.mandatoryFeatures.join(', ')}`, { cause: 'only derivations that require all of them are sent here; ordinary builds never are', fix: `clear the 7th field of the machine line (${line}) unless that is intended` });
        }
        return pass(`builds ${m.systems.join(', ') || 'this system'}; features ${m.supportedFeatures.join(', ') || 'none'}`);
      },
    },
    {
      id: 'derivation',
      title: 'the derivation (--drv/--attr)',
      needs: ['uri'],
      run: async (s) => {
        const drv = s.ctx.drv;
        if (!drv) return { status: 'skip', summary: 'no --drv or --attr given' };
        const m = s.machine;
        const why = cannotTake(m, drv.system, drv.requiredFeatures);
        const wants = `${drv.system}${drv.requiredFeatures.length ? ` with ${drv.requiredFeatures.join(', ')}` : ''}`;
        if (why) {
          return fail(`${drv.path} (${wants}) cannot go to ${s.name}: ${why}`, "Nix sends a derivation only to a builder whose systems include its system, whose features cover its requiredSystemFeatures, and whose mandatory features it requires", `change the machine line (${m.source.file}:${m.source.line}) if the builder can do it, or build it elsewhere`);
        }
        return pass(`${drv.path} (${wants}) can go to ${s.name}`);
      },
    },
    {
      id: 'trust',
      title: 'allowed to build there',
      needs: ['remote-nix'],
      run: async (s) => {
        const p = s.probe!;
        if (p.storeWritable) return pass(`${p.user ?? 'the ssh user'} owns the builder's store (single-user install)`);
        if (!p.daemonSocket) return fail("the builder's store is not writable by the ssh user and no nix-daemon socket is there", 'the nix-daemon on the builder is not running', 'start it on the builder: systemctl start nix-daemon (macOS: launchctl kickstart -k system/org.nixos.nix-daemon)');
        if (p.trustedUsers === null) return warn("cannot read the builder's trusted-users", { cause: 'the build below tells whether the ssh user is trusted', fix: '' });
        const who = p.user ?? '';
        const ok = p.trustedUsers.includes('*') || p.trustedUsers.includes(who) || p.groups.some((g) => p.trustedUsers!.includes(`@${g}`));
        if (ok) return pass(`${who} is trusted (trusted-users = ${p.trustedUsers.join(' ')})`);
        return fail(`${who} is not in the builder's trusted-users (${p.trustedUsers.join(' ') || 'empty'})`, "the builder's nix-daemon refuses to build or import unsigned paths for an untrusted user (\"you are not privileged to build input-addressed derivations\")", `on the builder add "trusted-users = root ${who}" to /etc/nix/nix.conf (NixOS: nix.settings.trusted-users) and restart its nix-daemon`);
      },
    },
    {
      id: 'store-ping',
      title: 'store ping',
      needs: ['remote-nix'],
      timeoutMs: 90_000,
      run: async (s) => {
        const ping = await storePing(s);
        if (!ping) return fail('cannot run the local nix', '`nix --version` failed', 'install Nix, or put it on PATH');
        const { r, ev, v } = ping;
        if (r.exitCode !== 0) {
          const ex = explainBuild(r.stderr);
          return fail('the store ping failed', ex?.cause ?? r.stderr.trim().split('\n').pop() ?? '', ex?.fix ?? 'see the evidence', { evidence: [ev] });
        }
        const info = parseStorePing(r.stdout + r.stderr);
        if (info.trusted === false) return fail('the builder answers, but says the ssh user is not trusted', 'the builder\'s nix-daemon does not trust the ssh user', 'add it to trusted-users on the builder', { evidence: [ev] });
        return pass(`answers (local Nix ${formatVersion(v)}${info.version ? `, builder ${info.version}` : ''})`, { evidence: [ev] });
      },
    },
    {
      id: 'build',
      title: 'a real build',
      needs: ['login', 'remote-nix'],
      timeoutMs: 600_000,
      run: async (s) => {
        if (!s.ctx.build) return { status: 'skip', summary: 'skipped (--no-build)' };
        const file = path.join(s.tmpDir, 'probe.nix');
        fs.writeFileSync(file, PROBE_NIX);
        const system = s.machine.systems[0] ?? s.probe?.system ?? 'builtin';
        const line = formatMachineLine(s.machine);
        const nonce = `${Date.now()}-${randomBytes(6).toString('hex')}`;
        const r = await s.ctx.exec('nix-build', [file, '--argstr', 'nonce', nonce, '--argstr', 'system', system, '--max-jobs', '0', '--no-out-link', '--builders', line], { env: envWithoutAgent(), timeoutMs: 580_000 });
        const ev = { command: r.command, output: (r.stdout + r.stderr).trim().split('\n').slice(-12).join('\n') };
        const out = r.stdout.trim().split('\n').pop() ?? '';
        if (r.exitCode !== 0 || !out.startsWith('/nix/store/')) {
          const ex = explainBuild(r.stderr);
          return fail('a build sent to this builder failed', ex?.cause ?? 'see the evidence', ex?.fix ?? "read Nix's output in the evidence", { evidence: [ev] });
        }
        const there = await ssh(s, ['test', '-e', out]);
        if (there.exitCode !== 0) return fail(`${out} was built, but is not in the builder's store`, 'the build did not run there', 'see the evidence', { evidence: [ev, there.ev] });
        return pass(`${out} was built on ${s.name}`, { evidence: [ev] });
      },
    },
  ];
  return withDrv ? all : all.filter((c) => c.id !== 'derivation');
}

/** An edit of an existing file: atomic, with its mode and owner, and a backup. */
function writeFileKeepingMode(p: string, text: string): void {
  writeAtomic(p, text, { mode: 0o644 });
}

/** The store ping of the local Nix version, against the store the build hook would open. */
async function storePing(s: BuilderState) {
  const v = parseNixVersion((await s.ctx.exec('nix', ['--version'])).stdout);
  if (!v) return null;
  const r = await s.ctx.exec('nix', storePingArgs(v, hookStoreUri(s)), { env: envWithoutAgent(), timeoutMs: 80_000 });
  return { v, r, ev: { command: r.command, output: (r.stdout + r.stderr).trim() } };
}

/** The store URI the build hook opens: the machine's key and host key as store settings (Machine::openStore). */
function hookStoreUri(s: BuilderState): string {
  const params = new URLSearchParams();
  if (s.machine.sshKey) params.set('ssh-key', s.machine.sshKey);
  if (s.machine.hostKey) params.set('base64-ssh-public-host-key', s.machine.hostKey);
  const extra = params.toString();
  if (!extra) return s.machine.uri;
  const base = s.machine.uri.includes('://') ? s.machine.uri : `ssh://${s.machine.uri}`;
  return `${base}${base.includes('?') ? '&' : '?'}${extra}`;
}

/** Why Nix would not send a derivation to this machine (build-remote.cc: system, allSupported, mandatoryMet). */
export function cannotTake(m: { systems: string[]; supportedFeatures: string[]; mandatoryFeatures: string[] }, system: string, required: string[]): string | null {
  if (system !== 'builtin' && m.systems.length && !m.systems.includes(system)) return `it needs system ${system}; the builder offers ${m.systems.join(', ')}`;
  const offered = new Set([...m.supportedFeatures, ...m.mandatoryFeatures]);
  const missing = required.filter((f) => !offered.has(f));
  if (missing.length) return `it requires feature ${missing.join(', ')}, which the builder does not offer`;
  const unmet = m.mandatoryFeatures.filter((f) => !required.includes(f));
  if (unmet.length) return `the builder only takes derivations that require ${unmet.join(', ')}`;
  return null;
}

export async function cleanup(s: BuilderState): Promise<void> {
  if (!s.tmpDir) return;
  if (fs.existsSync(path.join(s.tmpDir, 'cm'))) {
    await s.ctx.exec('ssh', ['-o', `ControlPath=${path.join(s.tmpDir, 'cm')}`, '-O', 'exit', '--', s.target], { timeoutMs: 5000 });
  }
  fs.rmSync(s.tmpDir, { recursive: true, force: true });
}

