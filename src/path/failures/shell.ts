// The builder account's login shell. sshd runs every command, Nix's too, as
// `SHELL -c COMMAND`, so a shell that refuses commands stops Nix before its protocol starts.
import type { Entry } from '../entry.js';

const shellFix = (user: string | null | undefined) =>
  `give ${user ?? 'the ssh user'} a shell that runs commands, on the builder: usermod -s /bin/sh ${user ?? 'USER'} (NixOS: users.users.${user ?? 'USER'}.shell = pkgs.bashInteractive; or useDefaultShell = true)`;

export const SHELL_FAILURES: Entry[] = [
  {
    // Debian's /usr/sbin/nologin (shadow, and util-linux's) prints this on stdout and exits 1.
    id: 'shell.nologin',
    from: 'shell',
    pattern: /This account is currently not available/,
    versions: 'shadow and util-linux nologin (Debian, Ubuntu, Fedora, NixOS)',
    cause: (n) =>
      `the login shell of ${n.user ?? 'the ssh user'} on the builder is nologin, which runs no command, Nix's included`,
    fix: (n) => shellFix(n.user),
  },
  {
    // /bin/false and /usr/bin/false: the login is accepted, the command never runs, and
    // nothing is printed. Only the login's own command can tell: it always prints.
    id: 'shell.false',
    from: 'shell',
    silent: true,
    exit: [1],
    stages: ['login', 'probe'],
    versions: 'any shell that exits 1 without running its -c command (/bin/false, /usr/bin/false)',
    cause: (n) =>
      `the key is accepted, but the command sent printed nothing and exited 1: the login shell of ${n.user ?? 'the ssh user'} on the builder runs no commands (/bin/false, or a shell like it)`,
    fix: (n) => shellFix(n.user),
  },
  {
    id: 'shell.nix-missing',
    from: 'shell',
    pattern:
      /nix-(store|daemon): (command )?not found|No such file or directory.*nix-(store|daemon)|exec: nix-(store|daemon): not found/,
    versions: 'bash, dash, zsh wordings of command-not-found',
    cause: () =>
      "nix-store (nix-daemon for ssh-ng) is not on the builder's non-interactive PATH, the one Nix's ssh command gets",
    fix: () =>
      'add ?remote-program=/path/to/nix-store (or nix-daemon) to the store URI, or put Nix on PATH for non-interactive shells on the builder',
  },
];
