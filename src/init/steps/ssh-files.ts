// Steps 4 and 5, the local ssh side: refuse files we must not or cannot edit, learn the
// builder's host key and decide whether to trust it, and make the Host block, checked
// with `ssh -G` against what ssh will really use.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Exec } from '../../io/exec.js';
import { readText } from '../../io/files.js';
import { fetchHostKey, SshError } from '../../io/ssh2-session.js';
import { fingerprint, type HostKey } from '../../ssh/host-key.js';
import { conflictingKeys, pinHostKey } from '../../ssh/known-hosts.js';
import {
  adoptHostBlock,
  effectiveConfigMismatches,
  unmanagedHostLines,
  upsertHostBlock,
  type HostBlock,
} from '../../ssh/ssh-config.js';
import type { WriteStep } from '../../plan/plan.js';
import { UsageError, validateFingerprint } from '../../validate.js';
import { storeSymlink } from '../install.js';
import type { BuilderAnswers } from './builder.js';
import { validatePositiveInt } from '../../validate.js';
import { decideAdopt, InitFailed, type WizardCtx } from './context.js';

export interface SshFiles {
  configPath: string;
  knownHostsPath: string;
  /** As read once, when planning (null: no such file); edits and the apply's "changed since" check both start from these. */
  configBefore: string | null;
  knownBefore: string | null;
  /** The user's own Host block for this name is to be taken over. */
  adopt: boolean;
}

/** Read ~/.ssh/config and known_hosts, refusing what ssh itself would refuse. */
export async function readSshFiles(c: WizardCtx, name: string): Promise<SshFiles> {
  const configPath = path.join(c.sshDir, 'config');
  const knownHostsPath = path.join(c.sshDir, 'known_hosts');
  for (const p of [configPath, knownHostsPath]) {
    const target = storeSymlink(p);
    if (target)
      throw new UsageError(
        `${p} is a link into the Nix store (${target}), managed by NixOS or home-manager; add the Host block there instead`,
      );
  }
  const uid = c.install.user.uid;
  const dir = statOrNull(c.sshDir);
  if (dir && dir.uid !== uid)
    throw new UsageError(
      `${c.sshDir} is owned by uid ${dir.uid}, not the build user (uid ${uid}); ssh refuses its files. Fix: chown ${uid} ${c.sshDir}`,
    );
  if (dir && dir.mode & 0o022)
    throw new UsageError(
      `${c.sshDir} is writable by group or others (mode ${(dir.mode & 0o777).toString(8)}); ssh refuses such a directory. Fix: chmod 700 ${c.sshDir}`,
    );
  // ssh refuses a config file another user could have written ("Bad owner or permissions
  // on ~/.ssh/config", readconf.c): owned by the user or root, not group/other-writable.
  const cfg = statOrNull(configPath);
  if (cfg && ((cfg.uid !== uid && cfg.uid !== 0) || cfg.mode & 0o022)) {
    throw new UsageError(
      `Bad owner or permissions on ${configPath} (owner uid ${cfg.uid}, mode ${(cfg.mode & 0o777).toString(8)}): ssh refuses to read it. Fix: chown ${uid} ${configPath} && chmod 600 ${configPath}`,
    );
  }
  const configBefore = readText(configPath);
  const clash = unmanagedHostLines(configBefore ?? '', name);
  if (clash.length) {
    const where = `${configPath} line ${clash.join(', ')}`;
    if (!adoptHostBlock(configBefore!, { name, hostName: name, port: 22, user: name, identityFile: '/' })) {
      throw new UsageError(
        `--name: ${where} has a Host line naming ${name} together with other hosts, which nixremote cannot take over; pass another --name`,
      );
    }
    if (!(await decideAdopt(c, `${where} has your own "Host ${name}"`))) {
      throw new UsageError(
        `--name: ${where} already has its own "Host ${name}"; pass --adopt to take it over (its other options are kept, with a backup), or another --name`,
      );
    }
  }
  return { configPath, knownHostsPath, configBefore, knownBefore: readText(knownHostsPath), adopt: clash.length > 0 };
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/** The address answers, but not as sshd: bad input (exit 2), or a question asked again. */
export class NotSshd extends UsageError {}

/** The host key could not be had because of the address or port given: worth asking again. */
export function wrongAddress(e: unknown): e is Error {
  return e instanceof NotSshd || (e instanceof SshError && (e.kind === 'connect' || e.kind === 'dropped'));
}

/** Step 4: learn the host key, show it, and decide to trust it (or refuse). */
export async function trustHostKey(c: WizardCtx, b: BuilderAnswers, files: SshFiles): Promise<HostKey> {
  const { out, answers, flags } = c;
  const fpFlag = flags.hostKeyFingerprint === undefined ? undefined : validateFingerprint(flags.hostKeyFingerprint);
  out.step(`Connecting to ${b.host}:${b.port} for its host key`);
  const hostKey = await fetchHostKey({ host: b.host, port: b.port }).catch((e: unknown) => {
    // Something that is not sshd on that port means the address is wrong: bad input.
    if (e instanceof SshError && e.kind === 'protocol') throw new NotSshd(`--host/--port: ${e.message}`);
    throw e;
  });
  const fp = fingerprint(hostKey);
  out.info(`  ${hostKey.type} ${fp}`);
  let expected = fpFlag;
  if (expected !== undefined && expected !== fp) {
    const mismatch = `--host-key-fingerprint: ${b.host}:${b.port} shows ${fp}, not ${expected}; check that you reach the right machine`;
    // On a terminal the question comes back: trust what it shows (default no), or stop.
    if (!(await answers.canAsk())) throw new UsageError(mismatch);
    out.fail(mismatch.replace(/^--host-key-fingerprint: /, ''));
    expected = undefined;
  }
  const conflicts = conflictingKeys(files.knownBefore ?? '', b.name, hostKey);
  const mismatched = fpFlag !== undefined && expected === undefined;
  if (conflicts.length) {
    out.warn(`${files.knownHostsPath} already pins another key for ${b.name}:`);
    for (const k of conflicts) out.info(`  line ${k.line}: ${k.key.type} ${fingerprint(k.key)}`);
    out.info(`  the builder now shows: ${hostKey.type} ${fp}`);
    const replace =
      expected === fp ||
      (!answers.yes &&
        (await answers.confirm({
          flag: null,
          value: undefined,
          message: `The host key changed. Replace the pinned key with ${fp}?`,
          default: false,
        })));
    if (!replace) {
      throw new InitFailed(
        `the host key of ${b.name} changed; if the builder was reinstalled, confirm its new key with --host-key-fingerprint ${fp} (check it on the builder: ssh-keygen -lf /etc/ssh/ssh_host_${hostKey.type.replace(/^ssh-/, '')}_key.pub)`,
      );
    }
  } else if (expected === undefined) {
    const trust = await answers.confirm({
      flag: '--host-key-fingerprint',
      value: undefined,
      message: `Trust this host key for ${b.name}? (compare on the builder: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)`,
      default: !mismatched,
    });
    if (!trust) throw new InitFailed('host key not trusted; nothing was changed');
    if (answers.yes) out.info(`  trusted on first use (pass --host-key-fingerprint ${fp} to require it)`);
  }
  answers.note('--host-key-fingerprint', fp);
  return hostKey;
}

/** Step 5: the Host block and the pinned key, as planned writes. */
export async function sshFileSteps(
  c: WizardCtx,
  b: BuilderAnswers,
  files: SshFiles,
  keyPath: string,
  hostKey: HostKey,
): Promise<WriteStep[]> {
  const block = hostBlockOf(c, b, keyPath);
  const adopted = files.adopt ? adoptHostBlock(files.configBefore ?? '', block) : null;
  if (adopted) {
    c.out.step(`Taking over your "Host ${b.name}" (${files.configPath} line ${adopted.line})`);
    if (adopted.kept.length) c.out.info(`  kept as they are: ${adopted.kept.map((l) => l.trim()).join('; ')}`);
    if (adopted.replaced.length) c.out.info(`  replaced by nixremote's settings: ${adopted.replaced.join('; ')}`);
  }
  const config = adopted ?? upsertHostBlock(files.configBefore ?? '', block);
  await checkEffectiveConfig(c.exec, config.text, block, keyPath);
  const owner = { uid: c.install.user.uid, gid: c.install.user.gid, dirMode: 0o700 };
  return [
    {
      kind: 'write',
      title: `Pin ${b.name}'s host key`,
      path: files.knownHostsPath,
      before: files.knownBefore,
      after: pinHostKey(files.knownBefore ?? '', b.name, hostKey).text,
      mode: 0o644,
      ...owner,
    },
    {
      kind: 'write',
      title: `Host block for ${b.name}`,
      path: files.configPath,
      before: files.configBefore,
      after: config.text,
      mode: 0o600,
      ...owner,
    },
  ];
}

/** `ssh -G` over the config we are about to write: another section must not override ours. */
async function checkEffectiveConfig(exec: Exec, configText: string, block: HostBlock, keyPath: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-'));
  try {
    const file = path.join(dir, 'config');
    fs.writeFileSync(file, configText, { mode: 0o600 });
    const r = await exec('ssh', ['-F', file, '-G', '--', block.name]);
    if (r.exitCode !== 0) throw new UsageError(`ssh cannot read the resulting ~/.ssh/config: ${r.stderr.trim()}`);
    const bad = effectiveConfigMismatches(r.stdout, block, keyPath);
    if (bad.length) {
      throw new UsageError(
        `in ~/.ssh/config another setting overrides the Host block for ${block.name} (${bad.join('; ')}); move or narrow that setting, then re-run`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The builder's Host block as init writes it (the ssh config, or the module's extraConfig). */
export function hostBlockOf(c: WizardCtx, b: BuilderAnswers, keyPath: string): HostBlock {
  return {
    name: b.name,
    hostName: b.host,
    port: b.port,
    user: b.user,
    identityFile: keyPath,
    connectTimeout: connectTimeoutOf(c),
  };
}

/** --connect-timeout, checked (a positive number of seconds), else 10. */
export function connectTimeoutOf(c: WizardCtx): number {
  if (c.flags.connectTimeout === undefined) return 10;
  const n = validatePositiveInt(c.flags.connectTimeout, '--connect-timeout');
  c.answers.note('--connect-timeout', String(n));
  return n;
}
