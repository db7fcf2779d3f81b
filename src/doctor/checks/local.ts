// Checks of this machine, made once: can this run see what the daemon uses, which Nix is
// here, where `builders` is set and whether the daemon honours it, whether the daemon
// has read the current nix.conf, and whether it can find ssh.
import * as path from 'node:path';
import { localNixVersionRun, targetCtxOf, type DoctorCtx } from '../context.js';
import { secretKeyFiles } from '../../nix/signing.js';
import { targetByName } from '../../targets/index.js';
import type { Install } from '../../init/install.js';
import type { Check } from '../types.js';
import { macBuildersCheck } from './mac-builders.js';
import { fail, pass, warn } from '../types.js';
import {
  daemonBuilders,
  daemonScopes,
  daemonTrusts,
  effective,
  readBuilders,
  userConfFiles,
  type Builders,
  type NixConfig,
} from '../../nix/effective-config.js';
import { machineRules } from '../../nix/machines-file.js';
import { formatVersion, parseNixVersion, storePingArgs, type Version } from '../../nix/version.js';

export interface LocalState {
  ctx: DoctorCtx;
  cfg: NixConfig;
  builders: Builders;
  version: Version | null;
}

export function localState(ctx: DoctorCtx): LocalState {
  const { cfg, builders } = daemonBuilders(ctx.read, ctx.env, buildWho(ctx));
  return { ctx, cfg, builders, version: null };
}

const buildWho = (ctx: DoctorCtx) => ({
  multiUser: ctx.install.multiUser,
  home: ctx.install.user.home,
  name: ctx.install.user.name,
});

const LAUNCHD_PATH = '/usr/bin:/bin:/usr/sbin:/sbin';

/** Whether this run can read what the build hook uses (root's files on a multi-user install). */
export const seesDaemonFiles = (install: Install) => !(install.multiUser && install.user.uid !== 0);

export function localChecks(): Check<LocalState>[] {
  return [
    {
      id: 'access',
      title: 'who builds',
      needs: [],
      run: async (s) => {
        const { install } = s.ctx;
        if (!seesDaemonFiles(install)) {
          return fail(
            `multi-user install (${install.reason}), and this is not root`,
            "the nix-daemon builds as root with root's ssh key, config and known_hosts, which this user cannot read",
            'run it as root: sudo nixremote doctor',
          );
        }
        return pass(
          `${install.multiUser ? 'multi-user: the daemon builds as root' : `single-user: builds run as ${install.user.name}`} (${install.reason})`,
        );
      },
    },
    {
      id: 'target',
      title: 'where Nix keeps its config',
      needs: [],
      run: async (s) => {
        const tctx = targetCtxOf(s.ctx);
        const t = targetByName(s.ctx.install.target);
        const where = `${t.name} (${t.detect(tctx) ?? 'as detected'})`;
        const found = t.upkeep(tctx);
        if (!found.length) return pass(where);
        return warn(`${where}: ${found.map((f) => f.summary).join('; ')}`, {
          cause: found.map((f) => f.cause).join('. '),
          fix: found.map((f) => f.fix).join('; then '),
        });
      },
    },
    {
      id: 'nix',
      title: 'local Nix',
      needs: [],
      run: async (s) => {
        const r = await localNixVersionRun(s.ctx);
        s.version = r.exitCode === 0 ? parseNixVersion(r.stdout) : null;
        if (!s.version)
          return fail(
            '`nix --version` failed',
            r.stderr.trim() || 'nix is not on PATH',
            'install Nix, or put it on PATH',
            { evidence: [{ command: r.command, output: r.stdout + r.stderr }] },
          );
        return pass(`Nix ${formatVersion(s.version)}; store ping: nix ${storePingArgs(s.version, 'URI').join(' ')}`);
      },
    },
    {
      id: 'builders',
      title: 'configured builders',
      needs: ['access', 'nix'],
      run: async (s) => {
        // Read again the way this Nix version's parser reads it: what 2.8 rejects, 2.34 may take.
        const b = s.version
          ? readBuilders(
              s.cfg,
              s.ctx.read,
              s.ctx.env,
              daemonScopes(s.cfg, s.ctx.read, buildWho(s.ctx)),
              machineRules(s.version),
            )
          : s.builders;
        if (s.cfg.errors.length)
          return fail(
            s.cfg.errors[0]!,
            'Nix stops reading its configuration at a missing include',
            'fix or remove the include line',
          );
        if (b.errors.length) {
          const e = b.errors[0]!;
          return fail(
            `${e.file}:${e.line}:${e.column}: ${e.message}`,
            'Nix rejects the whole builders list when one line is malformed',
            `fix ${e.file} line ${e.line}, column ${e.column}`,
          );
        }
        const where = b.source
          ? `builders = ${b.value} (${b.source.file}:${b.source.line})`
          : `default builders = ${b.value}`;
        if (b.machines.length === 0) {
          return fail(
            `no builder configured: ${where}`,
            'Nix has no remote machine to send builds to',
            'add one: sudo nixremote init',
          );
        }
        // The same store URI on two lines (a hand-made line beside init's, an @include twice):
        // two builders to the build hook, with one set of slot locks (current-load/URI-N).
        const byUri = new Map<string, string[]>();
        for (const m of b.machines)
          byUri.set(m.uri, [...(byUri.get(m.uri) ?? []), `${m.source.file}:${m.source.line}`]);
        const twice = [...byUri].filter(([, at]) => at.length > 1);
        if (twice.length)
          return warn(
            `${twice.map(([uri, at]) => `${uri} is listed ${at.length} times (${at.join(', ')})`).join('; ')}`,
            {
              cause:
                "Nix takes each line as a builder of its own, sharing that URI's slot locks: the builder is offered more than once, with whatever jobs, speed factor and features each line says",
              fix: `keep one line for each builder: remove ${twice.map(([, at]) => at.slice(1).join(', ')).join(', ')}`,
            },
          );
        return pass(`${b.machines.length} builder${b.machines.length > 1 ? 's' : ''}: ${where}`);
      },
    },
    {
      id: 'ignored-settings',
      title: 'builders set where the daemon ignores it',
      needs: ['access'],
      run: async (s) => {
        const { install, env } = s.ctx;
        if (!install.multiUser) return pass('single-user: Nix reads the user settings itself');
        // The daemon takes `builders` from a client only if the client's user is trusted.
        const homes = [{ home: install.user.home, user: install.user.name }];
        // Under sudo, the user who ran it is likely the one whose builds should offload.
        const sudoHome = env.SUDO_USER ? homeOf(s.ctx.read('/etc/passwd') ?? '', env.SUDO_USER) : null;
        if (sudoHome && env.SUDO_USER) homes.push({ home: sudoHome, user: env.SUDO_USER });
        const all: { file: string; user: string }[] = [];
        for (const h of homes) {
          for (const f of userConfFiles({ ...env, XDG_CONFIG_HOME: path.join(h.home, '.config') }, h.home)) {
            const text = s.ctx.read(f);
            if (text && /^\s*(extra-)?builders\s*=/m.test(text)) all.push({ file: f, user: h.user });
          }
        }
        if (env.NIX_CONFIG && /(^|\n)\s*builders\s*=/.test(env.NIX_CONFIG))
          all.push({ file: 'NIX_CONFIG', user: install.user.name });
        if (!all.length) return pass('builders is set only in the system configuration');
        const trusted = (u: string) => daemonTrusts(s.cfg, s.ctx.read, u);
        const found = all.filter((x) => !trusted(x.user)).map((x) => x.file);
        if (!found.length)
          return pass(
            `builders in ${all.map((x) => x.file).join(', ')} is taken: the daemon trusts ${[...new Set(all.map((x) => x.user))].join(', ')}`,
          );
        const daemonHas = effective(s.cfg, 'builders', ['system']) !== null || s.builders.machines.length > 0;
        const msg = `builders is also set in ${found.join(', ')}`;
        const cause =
          "the nix-daemon ignores a client's builders setting unless that user is in trusted-users (\"ignoring the client-specified setting 'builders', because it is a restricted setting\")";
        // Where the daemon's own settings live, in this target's terms.
        const t = targetByName(install.target);
        const fix = `move it to ${t.buildersHome(targetCtxOf(s.ctx))}${install.settingsFile && install.daemon ? ` and restart the nix-daemon (${install.daemon.how})` : ''}`;
        return daemonHas ? warn(msg, { cause, fix }) : fail(msg, cause, fix);
      },
    },
    {
      id: 'daemon-fresh',
      title: 'daemon has read the current nix.conf',
      needs: ['access'],
      run: async (s) => {
        const { install } = s.ctx;
        if (!install.multiUser) return pass('single-user: each Nix command reads nix.conf afresh');
        const d = s.ctx.daemon();
        if (d === 'unseen')
          return warn('cannot tell when the nix-daemon started here', {
            cause: 'nixremote reads that from /proc, which this system does not have',
            fix: `if you changed ${install.settingsFile ?? 'its settings'}, restart it: ${install.daemon?.how ?? ''}`,
          });
        if (!d)
          return fail(
            'no nix-daemon process is running',
            'on a multi-user install every build goes through the daemon',
            `start it: ${install.daemon?.how ?? 'systemctl start nix-daemon'}`,
          );
        // The daemon reads nix.conf once, at start. The machines file named by `builders`
        // is read by the build hook at each build, so it needs no restart.
        const files = s.cfg.systemFiles;
        // The start time is known to about a clock tick; a file written in the same 100 ms
        // as the start is taken as read.
        const newer = files.filter((f) => (s.ctx.mtimeMs(f) ?? 0) > d.startedMs + 100);
        if (newer.length) {
          const cmd = install.daemon?.restart;
          return fail(
            `${newer.join(', ')} changed after the nix-daemon (pid ${d.pid}) started at ${new Date(d.startedMs).toISOString()}`,
            'the daemon still runs with the settings it read at start',
            `restart it: ${install.daemon?.how ?? 'systemctl restart nix-daemon'}`,
            cmd
              ? {
                  action: {
                    description: cmd.join(' '),
                    steps: [
                      {
                        kind: 'command',
                        title: 'Restart the nix-daemon',
                        detail: cmd.join(' '),
                        run: async () => {
                          const r = await s.ctx.exec(cmd[0]!, cmd.slice(1), { timeoutMs: 60_000 });
                          if (r.exitCode !== 0) throw new Error(`${r.command} failed: ${r.stderr.trim()}`);
                        },
                      },
                    ],
                  },
                }
              : {},
          );
        }
        return pass(
          `nix-daemon pid ${d.pid} started after the last change to ${files.length} config file${files.length === 1 ? '' : 's'}`,
        );
      },
    },
    {
      // Signed access rests on this key: a copy lets anyone sign paths the builders take.
      id: 'signing-key',
      title: "this machine's signing key",
      needs: ['access'],
      run: async (s) => {
        const files = secretKeyFiles(s.cfg, daemonScopes(s.cfg, s.ctx.read, buildWho(s.ctx)));
        if (!files.length) return pass('none: builders trust the ssh user, or take signed paths from elsewhere');
        for (const f of files) {
          const st = s.ctx.stat(f);
          if (!st)
            return fail(
              `${f} (secret-key-files) does not exist`,
              'Nix fails every build it would sign with it',
              'make it again (nixremote init NAME --access signed makes one), or take it out of secret-key-files',
            );
          if (st.mode & 0o077)
            return fail(
              `${f} is readable by others (mode ${(st.mode & 0o777).toString(8)})`,
              'whoever reads it can sign paths that every builder trusting its public key will take',
              `chmod 600 ${f}`,
            );
        }
        return pass(`${files.join(', ')}: readable by its owner only`);
      },
    },
    macBuildersCheck,
    {
      id: 'daemon-ssh',
      title: 'ssh on the PATH Nix uses',
      needs: ['access'],
      run: async (s) => {
        const seen = s.ctx.install.multiUser ? s.ctx.daemon() : null;
        const d = seen === 'unseen' ? null : seen;
        // Where processes cannot be looked at (macOS), the daemon runs under launchd, whose
        // jobs get PATH=/usr/bin:/bin:/usr/sbin:/sbin unless their plist sets one.
        const p = seen === 'unseen' ? LAUNCHD_PATH : d ? d.path : (s.ctx.env.PATH ?? null);
        if (p === null) return warn("cannot read the daemon's environment", { cause: 'its PATH is unknown', fix: '' });
        const dirs = p.split(':').filter(Boolean);
        const hit = dirs.find((dir) => s.ctx.stat(path.join(dir, 'ssh'))?.isFile);
        if (hit) return pass(`${path.join(hit, 'ssh')}${d ? ` (daemon pid ${d.pid})` : ''}`);
        return fail(
          `no ssh in ${d ? "the daemon's" : 'this'} PATH (${p})`,
          'the build hook runs "ssh" by name and cannot start it',
          "install OpenSSH, or add its directory to the nix-daemon's PATH (its service unit), then restart it",
        );
      },
    },
  ];
}

/** A user's home from passwd text (name:pw:uid:gid:gecos:home:shell). */
export function homeOf(passwd: string, user: string): string | null {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] === user && f.length >= 7) return f[5]!;
  }
  return null;
}
