// Commander wiring, and the one place that turns errors into exit codes:
// 0 success, 1 a failure found or an operation failed, 2 usage or bad input, 130 interrupted.
// Commands are imported only when they run, so --help and --version stay quick.
import { Argument, Command, Option, CommanderError } from 'commander';
import { fstatSync, readFileSync, writeSync } from 'node:fs';
import { printable } from './text/printable.js';

// `nixremote --help | head` closes the pipe early: that is not an error. Attached before
// a command runs, not at start: making process.stdout for a pipe loads node's net and
// stream modules, which --help and --version do without.
function quietOnClosedPipes(): void {
  for (const s of [process.stdout, process.stderr])
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(0);
    });
}

/** Help, version and usage errors, written straight to the descriptor (see above). */
function writeTo(fd: number): (text: string) => void {
  return (text) => {
    try {
      writeSync(fd, text);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EPIPE') process.exit(0);
      throw e;
    }
  };
}

/** The terminal's width for help, as commander would take it; 80 for a pipe or a file. */
function columns(fd: 1 | 2): number {
  if (!fstatSync(fd).isCharacterDevice()) return 80;
  const s = fd === 1 ? process.stdout : process.stderr;
  return (s.isTTY && s.columns) || 80;
}

// The bundle for bin/nixremote (scripts/bundle.mjs) has the version built in; the plain
// build reads package.json.
declare const NIXREMOTE_VERSION: string | undefined;
const version =
  typeof NIXREMOTE_VERSION === 'string'
    ? NIXREMOTE_VERSION
    : (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const program = new Command();
program
  .name('nixremote')
  .description('Set up remote Nix builders over SSH, and find out why builds stopped offloading.')
  .version(version, '-V, --version')
  .option('--verbose', 'show stack traces on errors')
  .showSuggestionAfterError()
  .exitOverride()
  .configureOutput({
    writeOut: writeTo(1),
    writeErr: writeTo(2),
    getOutHelpWidth: () => columns(1),
    getErrHelpWidth: () => columns(2),
    getOutHasColors: () => false,
    getErrHasColors: () => false,
  })
  .hook('preAction', quietOnClosedPipes);

program
  .command('init')
  .description(
    "Set up a remote builder for this machine's Nix: key, ssh config, host key, nix.conf, and a proof build.",
  )
  .option('--host <address>', 'builder host name or IP address')
  .option('--port <n>', 'ssh port on the builder', undefined)
  .option('--user <name>', 'ssh user on the builder')
  .option('--name <alias>', 'ssh Host alias and builder name (default: from --host)')
  .option('--key <path>', 'private key to use or make (default: ~/.ssh/nix_remote of the build user)')
  .option('--host-key-fingerprint <SHA256:...>', "require the builder's host key to have this fingerprint")
  .addOption(
    new Option(
      '--copy-key <how>',
      'how the key gets onto the builder (password: also when the key gets in already, to rewrite its line)',
    ).choices(['password', 'ssh', 'manual', 'skip']),
  )
  .option('--password-stdin', 'read the builder password from standard input (for --copy-key password)')
  .option('--no-restrict', "don't prefix the authorized_keys line with 'restrict'")
  .option(
    '--restrict-to-nix',
    'let the key only speak Nix: a forced command on its authorized_keys line (nix-store --serve --write for ssh, nix-daemon --stdio for ssh-ng)',
  )
  .option('--no-restrict-to-nix', 'leave the key able to run a shell on the builder (the default for trusted access)')
  .addOption(
    new Option(
      '--access <how>',
      "how the ssh user may build there: trusted (in the builder's trusted-users) or signed (this machine signs what it builds; the builder trusts that key, not the user; ssh-ng, Nix 2.16 here and 2.15 there)",
    ).choices(['trusted', 'signed']),
  )
  .option(
    '--builder-sudo',
    "with --access signed: add this machine's key to the builder's nix.conf over ssh, through sudo (the password asked once, never stored), and restart its nix-daemon",
  )
  .option(
    '--no-fix-modes',
    "don't make the builder user's home, ~/.ssh and authorized_keys writable by the owner only (sshd's StrictModes)",
  )
  .addOption(
    new Option(
      '--protocol <protocol>',
      "how Nix talks to the builder: ssh (nix-store --serve, every Nix) or ssh-ng (the builder's nix-daemon)",
    ).choices(['ssh', 'ssh-ng']),
  )
  .option(
    '--machines-format <format>',
    "toml: Lix 2.95's TOML machines file (Lix 2.95+ here; kept when the file is TOML already), or lines (default)",
  )
  .option(
    '--connect-timeout <s>',
    'seconds ssh waits for a builder that does not answer, in its Host block (default 10): the build hook waits this long before trying the next builder',
  )
  .option('--remote-program <path>', 'nix-store on the builder, when it is not on the non-interactive PATH')
  .option('--systems <list>', 'systems the builder builds for, comma-separated (default: detected)')
  .option('--features <list>', 'supported features, comma-separated (default: detected)')
  .option('--mandatory-features <list>', 'features a derivation must require to use this builder (default: none)')
  .option('--max-jobs <n>', 'jobs at once on the builder (default: its cores)')
  .option('--speed-factor <n>', 'preference among builders (default: builder cores / local cores)')
  .addOption(
    new Option(
      '--target <where>',
      'where Nix keeps its config: nix-conf, determinate (nix.custom.conf), macos, nixos or nix-darwin (a module); default: detected',
    ).choices(['nix-conf', 'determinate', 'macos', 'nixos', 'nix-darwin']),
  )
  .option(
    '--output <file>',
    'module path for --target nixos or nix-darwin (default: /etc/nixos/nixremote.nix, /etc/nix-darwin/nixremote.nix)',
  )
  .option(
    '--adopt',
    'take over a Host block or machine line of your own for this name (other options kept, backup made)',
  )
  .option('--no-test-build', 'skip the proof build')
  .option('-y, --yes', 'take the default for every question not answered by a flag')
  .option('--dry-run', 'ask, look, print the plan with diffs, and change nothing')
  .addHelpText(
    'after',
    `
Examples:
  sudo nixremote init
  sudo nixremote init --host 10.0.0.5 --user nixbuild --yes --password-stdin < pw.txt
  sudo nixremote init --host builder.lan --user nix --copy-key ssh --target nixos --dry-run
  nixremote init --host 127.0.0.1 --port 2222 --user nix --name fastbox --yes --host-key-fingerprint SHA256:...`,
  )
  .action(async (opts, cmd: Command) => {
    const { initCommand } = await import('./commands/init.js');
    await initCommand({ ...opts, verbose: cmd.optsWithGlobals().verbose });
  });

program
  .command('doctor')
  .description(
    'Check every configured builder the way the nix-daemon uses it, and say what is broken and how to fix it.',
  )
  .argument('[name...]', 'builders to check (the host of their store URI); default: all')
  .option(
    '--strict',
    'warn where a builder is sound but could be tighter: its ssh user trusted where signed access would do',
  )
  .option('--json', 'print one JSON document on stdout and nothing else')
  .option('--fix', 'apply the safe, local fixes (asks before each; host keys always ask)')
  .option('-y, --yes', 'with --fix: apply fixes that need no confirmation without asking')
  .option('--no-build', 'skip the real build on each builder')
  .option('--drv <path>', 'with NAME: can this derivation go to that builder?')
  .option('--attr <attr>', 'with NAME: like --drv, for an attribute of --file')
  .option('--file <file>', 'the Nix file for --attr (default: <nixpkgs>)')
  .option('--jobs <n>', 'builders checked side by side (default: 4 per core)')
  .addHelpText(
    'after',
    `
Examples:
  sudo nixremote doctor                   check every builder, with a real build each
  sudo nixremote doctor fastbox --no-build
  sudo nixremote doctor --json > report.json
  sudo nixremote doctor --fix             fix key modes, pin host keys (asks), restart the daemon
  sudo nixremote doctor fastbox --attr hello   can nixpkgs' hello go to fastbox?

Exit status: 0 all passed (warnings allowed), 1 something failed, 2 usage error.`,
  )
  .action(async (names: string[], opts, cmd: Command) => {
    const { doctorCommand } = await import('./commands/doctor.js');
    process.exitCode = await doctorCommand(names, { ...opts, verbose: cmd.optsWithGlobals().verbose });
  });

program
  .command('explain')
  .description(
    "Read a build's output and say, for each remote-build line, which builder it was, the cause and the fix.",
  )
  .argument('[log]', 'the log file (default: standard input)')
  .option('--json', 'print {"findings": [...]} on stdout and nothing else')
  .addHelpText(
    'after',
    `
Examples:
  nix build .#thing 2>&1 | nixremote explain
  nixremote explain build.log --json

Exit status: 0 nothing wrong found, 1 failures explained, 2 usage error.`,
  )
  .action(async (log: string | undefined, opts) => {
    const { explainCommand } = await import('./commands/explain.js');
    process.exitCode = await explainCommand(log, opts);
  });

const collect = (v: string, prev: string[] = []) => [...prev, v];

program
  .command('apply')
  .description(
    "Make this machine match a team's builders file (nixremote.toml): add the builders it lacks, update the ones that differ, one plan for all.",
  )
  .argument('<file>', 'the builders file (nixremote export writes one)')
  .option('--check', 'change nothing: say whether this machine matches the file (exit 0) or not (exit 1)')
  .option('--json', 'with --check: print {"matches", "builders": [...]} on stdout')
  .option('--prune', 'also remove the builders nixremote set up that the file no longer lists (never one of your own)')
  .option(
    '--password-stdin',
    'passwords for the builders whose key must be copied, one per line, in the order of the file',
  )
  .option('--no-test-build', 'skip the proof build on each builder added or changed')
  .option('--dry-run', 'print the plan with diffs, and change nothing')
  .addHelpText(
    'after',
    `
Host keys come from the file: a builder that shows another key is refused, nothing is trusted on first use.
Exit status: 0 applied (or, with --check, matches), 1 a step failed (or, with --check, differs), 2 bad input.`,
  )
  .action(async (file: string, opts) => {
    const { applyCommand } = await import('./commands/apply.js');
    process.exitCode = await applyCommand(file, opts);
  });

program
  .command('export')
  .description(
    "Write this machine's builders as a file that nixremote apply takes (the ones nixremote set up, or those named).",
  )
  .argument('[name...]', 'the builders to export (default: every one nixremote set up)')
  .option('-o, --output <file>', 'write it to FILE (a new one) instead of stdout')
  .option(
    '--module <file>',
    "nixremote's NixOS or nix-darwin module (default: /etc/nixos/nixremote.nix and /etc/nix-darwin/nixremote.nix)",
  )
  .action(async (names: string[], opts) => {
    const { exportCommand } = await import('./commands/apply.js');
    process.exitCode = await exportCommand(names, opts);
  });

program
  .command('why')
  .description(
    'Where a build would go now, derivation by derivation: which builder, here, or waiting, the rule that decided it, and why not each other builder.',
  )
  .argument('[installable...]', 'a .drv path, a .nix file, or a flake reference (nixpkgs#hello)')
  .option('-f, --file <file>', 'a Nix file to instantiate (with -A, as nix-build takes it)')
  .option('-A, --attr <attr>', 'an attribute of --file (repeatable)', collect)
  .option('-j, --max-jobs <n>', "this machine's max-jobs, as nix build -j would set it ('auto' or a number)")
  .option('--builders <spec>', "the builders, as nix build --builders would set them ('' for none)")
  .option('--system <system>', "this machine's system, as --system would set it")
  .option(
    '--extra-platforms <list>',
    'systems this machine also builds for (space-separated), as --extra-platforms would set them',
  )
  .option('--system-features <list>', "this machine's features (space-separated), as --system-features would set them")
  .option('--no-check', 'do not log in to the builders: take every one as reachable')
  .option('--json', 'print {"derivations": [...], ...} on stdout and nothing else')
  .addHelpText(
    'after',
    `
It instantiates what it is given and runs nix-store --realise --dry-run; it builds
nothing and changes nothing.

Examples:
  sudo nixremote why -f default.nix -A hello
  sudo nixremote why nixpkgs#hello --max-jobs 0
  sudo nixremote why /nix/store/...-thing.drv --json

Exit status: 0, or 1 when a derivation would fail for want of anywhere to build it; 2 usage error.`,
  )
  .action(async (installables: string[], opts) => {
    const { whyCommand } = await import('./commands/why.js');
    process.exitCode = await whyCommand(installables, opts);
  });

program
  .command('disable')
  .description("Take builders out of what Nix uses, keeping everything else about them (nixremote's own lines only).")
  .argument('<name...>', 'the builders to take out')
  .option('--why <text>', 'why, shown by list and status', 'taken out by hand')
  .option('--dry-run', 'print the plan with diffs, and change nothing')
  .action(async (names: string[], opts) => {
    const { toggleCommand } = await import('./commands/keep.js');
    process.exitCode = await toggleCommand(names, false, opts);
  });

program
  .command('enable')
  .description('Put disabled builders back into what Nix uses.')
  .argument('<name...>', 'the builders to put back')
  .option('--dry-run', 'print the plan with diffs, and change nothing')
  .action(async (names: string[], opts) => {
    const { toggleCommand } = await import('./commands/keep.js');
    process.exitCode = await toggleCommand(names, true, opts);
  });

program
  .command('keep')
  .description(
    'One round of keeping: the builders nixremote set up that do not answer as Nix needs are disabled, the ones it disabled that answer again are put back. Builders you disabled, and lines of your own, are never touched.',
  )
  .option('--dry-run', 'say what it would change, and change nothing')
  .option(
    '--install',
    'install the service that runs a round every --interval seconds (systemd timer; launchd on macOS)',
  )
  .option('--uninstall', 'stop and remove that service')
  .option('--interval <s>', 'with --install: seconds between rounds', '60')
  .option(
    '--target <name>',
    "with --install: nixos or nix-darwin puts the keeper into nixremote's module instead of /etc (default: detected)",
  )
  .option(
    '--module <file>',
    "nixremote's NixOS or nix-darwin module (default: /etc/nixos/nixremote.nix, /etc/nix-darwin/nixremote.nix)",
  )
  .option(
    '--live <file>',
    "on NixOS and nix-darwin (the module's keeper runs it): write FILE from /etc/nix/machines without the builders that are down",
  )
  .addHelpText(
    'after',
    `
Exit status: 0 every builder answers, 1 some builder is down (and out of use), 2 usage error.`,
  )
  .action(async (opts) => {
    const { keepCommand, keeperCommand, keepLiveCommand } = await import('./commands/keep.js');
    process.exitCode =
      opts.install || opts.uninstall
        ? await keeperCommand(opts)
        : opts.live
          ? await keepLiveCommand(opts)
          : await keepCommand(opts);
  });

program
  .command('list')
  .description('Every builder Nix will use, from every place Nix reads them, with where each is defined.')
  .option('--json', 'print {"builders": [...]} on stdout and nothing else')
  .option(
    '--module <file>',
    "nixremote's NixOS or nix-darwin module (default: /etc/nixos/nixremote.nix and /etc/nix-darwin/nixremote.nix)",
  )
  .action(async (opts) => {
    const { listCommand } = await import('./commands/list.js');
    process.exitCode = await listCommand(opts);
  });

program
  .command('status')
  .description(
    'The builders as the build hook sees them now: reachable, login time, Nix version, slots in use, load, free space.',
  )
  .argument('[name...]', 'builders to show (default: all)')
  .option('--json', 'print {"builders": [...]} on stdout and nothing else')
  .option('--watch', 'redraw every few seconds (plain lines when not on a terminal); Ctrl-C stops')
  .option('--interval <seconds>', 'with --watch: seconds between rounds', '3')
  .option('--count <n>', 'stop after n rounds (with --watch; like top -n)')
  .option('--jobs <n>', 'builders looked at side by side (default: 4 per core)')
  .option(
    '--module <file>',
    "nixremote's NixOS or nix-darwin module (default: /etc/nixos/nixremote.nix and /etc/nix-darwin/nixremote.nix)",
  )
  .addHelpText('after', '\nExit status: 0 every builder reachable, 1 one or more down, 2 usage error.')
  .action(async (names: string[], opts) => {
    const { statusCommand } = await import('./commands/status.js');
    process.exitCode = await statusCommand(names, opts);
  });

program
  .command('remove')
  .description(
    'Remove what nixremote set up for one builder: its Host block, pinned host key and machine line (or module entry).',
  )
  .argument('<name>', 'the builder to remove')
  .option('--on-builder', "also delete this machine's key line from the builder's authorized_keys")
  .option(
    '--password-stdin',
    'with --on-builder: log in with the password from standard input (a key that can only speak Nix cannot take itself out)',
  )
  .option(
    '--builder-sudo',
    "with --on-builder: also take this machine's signing key out of the builder's nix.conf, through sudo",
  )
  .option('--dry-run', 'print the plan with diffs, and change nothing')
  .option('-y, --yes', 'apply without asking')
  .option(
    '--module <file>',
    "nixremote's NixOS or nix-darwin module (default: /etc/nixos/nixremote.nix and /etc/nix-darwin/nixremote.nix)",
  )
  .action(async (name: string, opts) => {
    const { removeCommand } = await import('./commands/remove.js');
    process.exitCode = await removeCommand(name, opts);
  });

program
  .command('backups')
  .description('The backups nixremote kept of the files it changed (the newest 3 of each), and how to restore one.')
  .argument(
    '[file...]',
    "files whose backups to list (default: the build user's ssh config and known_hosts, /etc/nix/machines and nix.conf, the NixOS module)",
  )
  .option('--json', 'print {"backups": [...]} on stdout and nothing else')
  .action(async (files: string[], opts) => {
    const { backupsCommand } = await import('./commands/backups.js');
    process.exitCode = await backupsCommand(files, opts);
  });

program
  .command('restore')
  .description(
    'Put a backup back in place of its file (shows the diff and asks; the replaced content becomes a backup).',
  )
  .argument('<backup>', 'a FILE.nixremote-<time>.bak that `nixremote backups` lists')
  .option('-y, --yes', 'restore without asking')
  .option('--dry-run', 'show the diff, and change nothing')
  .action(async (backup: string, opts) => {
    const { restoreCommand } = await import('./commands/backups.js');
    process.exitCode = await restoreCommand(backup, opts);
  });

program
  .command('completion')
  .description('Print a shell completion script: commands, flags, flag choices, and builder names.')
  .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(['bash', 'zsh', 'fish']))
  .addHelpText(
    'after',
    `
Install:
  bash  nixremote completion bash | sudo tee /etc/bash_completion.d/nixremote
  zsh   nixremote completion zsh > "\${fpath[1]}/_nixremote"     (or: source <(nixremote completion zsh))
  fish  nixremote completion fish > ~/.config/fish/completions/nixremote.fish`,
  )
  .action(async (shell: 'bash' | 'zsh' | 'fish') => {
    const { commandTree, completionScript } = await import('./commands/completion.js');
    process.stdout.write(completionScript(shell, commandTree(program)));
  });

// Builder names for the completion scripts, one per line; quiet on any error.
program.command('__builders', { hidden: true }).action(async () => {
  const { builderNames } = await import('./commands/list.js');
  process.stdout.write(
    builderNames()
      .map((n) => `${n}\n`)
      .join(''),
  );
});

program.addHelpText(
  'after',
  `
Examples:
  sudo nixremote init                 set up a builder, asking each question
  sudo nixremote doctor               why do builds not offload? check every builder
  nixremote list                      every builder, and where it is defined
  sudo nixremote status --watch       what the builders are doing now
  sudo nixremote remove fastbox       take a builder away again
  nixremote init --help               every flag of the wizard`,
);

function verbose(): boolean {
  return process.argv.includes('--verbose');
}

async function main(): Promise<number> {
  // No command: the help, on stdout (commander's own goes to stderr), so `nixremote | less` shows it.
  if (process.argv.length <= 2) {
    program.outputHelp();
    return 0;
  }
  try {
    await program.parseAsync(process.argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')
        return 0;
      return 2; // commander already printed the message
    }
    return reportError(e);
  }
}

function reportError(e: unknown): number {
  const err = e as Error & { exitCode?: number; rolledBack?: string[]; name?: string };
  if (err?.name === 'ExitPromptError' || err?.message === 'interrupted') {
    process.stderr.write(`\nInterrupted${err.rolledBack?.length ? `; put back: ${err.rolledBack.join(', ')}` : ''}.\n`);
    return 130;
  }
  const msg = err?.message ?? String(e);
  // A message can quote what a builder or Nix printed: no raw control bytes on the terminal.
  process.stderr.write(`nixremote: ${printable(msg)}\n`);
  if (err?.rolledBack?.length) process.stderr.write(`nixremote: put back as they were: ${err.rolledBack.join(', ')}\n`);
  if (verbose() && err?.stack) process.stderr.write(err.stack + '\n');
  return err?.exitCode === 2 ? 2 : 1;
}

void main().then((code) => {
  process.exitCode = code;
});
