// Running the system's ssh the way the Nix daemon runs it: as the build user, no agent
// (the daemon has none), no terminal to ask on (BatchMode), no X11 or agent forwarding
// (Nix passes -x -a; see src/libstore/ssh.cc).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Exec, ExecResult } from '../io/exec.js';
import { keyLine, type HostKey } from './host-key.js';

let withoutAgent: Record<string, string> | null = null;
/** This process's environment without SSH_AUTH_SOCK, made once (reading process.env is not cheap). */
export function envWithoutAgent(): Record<string, string> {
  if (!withoutAgent) {
    withoutAgent = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'SSH_AUTH_SOCK') withoutAgent[k] = v;
  }
  return withoutAgent;
}

export interface NixSshOptions {
  /** The machine line's key (Nix passes it as -i). */
  key?: string | null;
  /** A port in the store URI (Nix 2.31+ passes it as -p). */
  port?: number | null;
  /** A known_hosts file holding the machine line's pinned host key (see pinnedKnownHosts). */
  knownHosts?: string | null;
  /** nixremote's own additions, e.g. a connect timeout or a control master. */
  options?: string[];
}

/** ssh's arguments for `target` and `command` as the build hook gives them. */
export function nixSshArgs(target: string, command: string[], o: NixSshOptions = {}): string[] {
  const args = ['-x', '-a', '-o', 'BatchMode=yes', ...(o.options ?? [])];
  if (o.key) args.push('-i', o.key);
  if (o.port) args.push('-p', String(o.port));
  if (o.knownHosts) args.push('-o', `UserKnownHostsFile=${o.knownHosts}`);
  return [...args, '--', target, ...command];
}

/**
 * Nix writes a machine line's pinned host key to a known_hosts file of its own, under the
 * store URI's host, and points ssh at it; this does the same in `dir`.
 */
export function pinnedKnownHosts(dir: string, name: string, key: HostKey): string {
  const f = path.join(dir, 'pinned_known_hosts');
  if (!fs.existsSync(f)) fs.writeFileSync(f, `${name} ${keyLine(key)}\n`);
  return f;
}

export function sshAsNix(
  exec: Exec,
  name: string,
  command: string[],
  timeoutMs = 30_000,
  input?: string,
): Promise<ExecResult> {
  return exec('ssh', nixSshArgs(name, command), { env: envWithoutAgent(), timeoutMs, input });
}

/** What the startup file is called for a login shell, for "remove the echo from X". */
export function startupFileFor(shell: string | null): string {
  const base = (shell ?? '').split('/').pop() ?? '';
  switch (base) {
    case 'bash':
      return '~/.bashrc (bash reads it for commands run over ssh) or /etc/bash.bashrc';
    case 'zsh':
      return '~/.zshenv (zsh reads it for every shell) or /etc/zshenv';
    case 'fish':
      return '~/.config/fish/config.fish (wrap output in `if status is-interactive`)';
    case 'csh':
    case 'tcsh':
      return '~/.cshrc';
    default:
      return "the login shell's startup files (~/.bashrc, ~/.profile), or a ForceCommand in sshd_config";
  }
}
