// Running the system's ssh the way the Nix daemon runs it: as the build user, no agent
// (the daemon has none), no terminal to ask on (BatchMode), no X11 or agent forwarding
// (Nix passes -x -a; see src/libstore/ssh.cc).
import type { Exec, ExecResult } from '../io/exec.js';

export function envWithoutAgent(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'SSH_AUTH_SOCK') env[k] = v;
  return env;
}

export function sshAsNix(exec: Exec, name: string, command: string[], timeoutMs = 30_000, input?: string): Promise<ExecResult> {
  return exec('ssh', ['-x', '-a', '-o', 'BatchMode=yes', '--', name, ...command], { env: envWithoutAgent(), timeoutMs, input });
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
