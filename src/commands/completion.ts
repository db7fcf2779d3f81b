// `nixremote completion bash|zsh|fish`: shell completion generated from the command tree
// itself (commands, flags, the choices a flag takes), so it cannot drift from the CLI.
// Builder names for doctor, status and remove are not baked in: the script asks
// `nixremote __builders` while completing, which reads them the way `list` does.
import type { Command, Option } from 'commander';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

interface Flag {
  /** --long and -s spellings. */
  names: string[];
  description: string;
  /** none: a switch; choices: one of `choices`; path: a file; text: anything else. */
  value: 'none' | 'choices' | 'path' | 'text';
  choices: string[];
}

interface Sub {
  name: string;
  description: string;
  flags: Flag[];
  /** What its arguments are: builder names, files, one of a few words, or nothing to offer. */
  args: 'builders' | 'files' | 'none' | string[];
}

export interface Tree {
  name: string;
  flags: Flag[];
  commands: Sub[];
}

const HELP: Flag = { names: ['--help', '-h'], description: 'show help', value: 'none', choices: [] };

function flagOf(o: Option): Flag {
  const names = [o.long, o.short].filter((n): n is string => !!n);
  const takes = o.required || o.optional;
  const value = !takes ? 'none' : o.argChoices?.length ? 'choices' : /<(path|file)>/.test(o.flags) ? 'path' : 'text';
  return { names, description: o.description, value, choices: o.argChoices ?? [] };
}

/** The command tree as completion needs it; hidden commands and options are left out. */
export function commandTree(program: Command): Tree {
  const visible = (c: Command) => !(c as unknown as { _hidden?: boolean })._hidden;
  return {
    name: program.name(),
    flags: [...program.options.filter((o) => !o.hidden).map(flagOf), HELP],
    commands: program.commands.filter(visible).map((c) => {
      const first = c.registeredArguments[0];
      const arg = first?.name();
      return {
        name: c.name(),
        description: c.description(),
        flags: [...c.options.filter((o) => !o.hidden).map(flagOf), HELP],
        args: first?.argChoices?.length
          ? first.argChoices
          : arg === 'name'
            ? 'builders'
            : arg === 'file' || arg === 'backup'
              ? 'files'
              : 'none',
      };
    }),
  };
}

export function completionScript(shell: Shell, t: Tree): string {
  return shell === 'bash' ? bash(t) : shell === 'zsh' ? zsh(t) : fish(t);
}

const words = (xs: string[]) => xs.join(' ');
const allNames = (fs: Flag[]) => fs.flatMap((f) => f.names);
const wordArgs = (t: Tree) => t.commands.filter((c): c is Sub & { args: string[] } => Array.isArray(c.args));

/** `case "$cmd $prev"` arms for flags that take a value: their choices, files, or nothing. */
function valueArms(t: Tree, arm: (pattern: string, f: Flag) => string): string[] {
  return t.commands.flatMap((s) =>
    s.flags.filter((f) => f.value !== 'none').map((f) => arm(f.names.map((n) => `"${s.name} ${n}"`).join('|'), f)),
  );
}

function bash(t: Tree): string {
  const n = t.name;
  return `# ${n} completion for bash. Install: ${n} completion bash > /etc/bash_completion.d/${n}
# (or: source <(${n} completion bash) in ~/.bashrc). Generated from ${n}'s own commands.
_${n}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} cmd= i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in -*) ;; *) cmd=\${COMP_WORDS[i]}; break ;; esac
  done
  COMPREPLY=()
  if [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W "${words([...t.commands.map((c) => c.name), ...allNames(t.flags)])}" -- "$cur"))
    return
  fi
  case "$cmd $prev" in
${valueArms(t, (p, f) => `    ${p}) ${f.value === 'choices' ? `COMPREPLY=($(compgen -W "${words(f.choices)}" -- "$cur"))` : f.value === 'path' ? 'COMPREPLY=($(compgen -f -- "$cur"))' : ':'}; return ;;`).join('\n')}
  esac
  if [[ $cur == -* ]]; then
    case $cmd in
${t.commands.map((s) => `      ${s.name}) COMPREPLY=($(compgen -W "${words(allNames(s.flags))}" -- "$cur")) ;;`).join('\n')}
    esac
    return
  fi
  case $cmd in
    ${builderCmds(t) || '__none'}) COMPREPLY=($(compgen -W "$(command ${n} __builders 2>/dev/null)" -- "$cur")) ;;
    ${fileCmds(t) || '__none'}) COMPREPLY=($(compgen -f -- "$cur")) ;;
${wordArgs(t)
  .map((c) => `    ${c.name}) COMPREPLY=($(compgen -W "${words(c.args)}" -- "$cur")) ;;`)
  .join('\n')}
  esac
}
complete -F _${n} ${n}
`;
}

const builderCmds = (t: Tree) =>
  t.commands
    .filter((c) => c.args === 'builders')
    .map((c) => c.name)
    .join('|');
const fileCmds = (t: Tree) =>
  t.commands
    .filter((c) => c.args === 'files')
    .map((c) => c.name)
    .join('|');
/** zsh and fish take descriptions in single quotes. */
const sq = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
const zq = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

function zsh(t: Tree): string {
  const n = t.name;
  const described = (name: string, d: string) => zq(`${name.replace(/:/g, '\\:')}:${d}`);
  return `#compdef ${n}
# ${n} completion for zsh. Install: ${n} completion zsh > "\${fpath[1]}/_${n}"
# (or: source <(${n} completion zsh) in ~/.zshrc, after compinit). Generated from ${n}'s own commands.
_${n}() {
  local cur=\${words[CURRENT]} prev=\${words[CURRENT-1]} cmd= i
  for ((i = 2; i < CURRENT; i++)); do
    [[ \${words[i]} != -* ]] && { cmd=\${words[i]}; break; }
  done
  if [[ -z $cmd ]]; then
    local -a cmds=(${t.commands.map((c) => described(c.name, c.description)).join(' ')})
    if [[ $cur == -* ]]; then compadd -- ${words(allNames(t.flags))}; else _describe -t commands '${n} command' cmds; fi
    return
  fi
  case "$cmd $prev" in
${valueArms(t, (p, f) => `    ${p}) ${f.value === 'choices' ? `compadd -- ${words(f.choices)}` : f.value === 'path' ? '_files' : ':'}; return ;;`).join('\n')}
  esac
  if [[ $cur == -* ]]; then
    case $cmd in
${t.commands.map((s) => `      ${s.name}) compadd -- ${words(allNames(s.flags))} ;;`).join('\n')}
    esac
    return
  fi
  case $cmd in
    ${builderCmds(t) || '__none'}) compadd -- \${(f)"$(command ${n} __builders 2>/dev/null)"} ;;
    ${fileCmds(t) || '__none'}) _files ;;
${wordArgs(t)
  .map((c) => `    ${c.name}) compadd -- ${words(c.args)} ;;`)
  .join('\n')}
  esac
}
if [[ \${funcstack[1]} == _${n} ]]; then _${n} "$@"; else compdef _${n} ${n}; fi
`;
}

function fish(t: Tree): string {
  const n = t.name;
  const lines = [
    `# ${n} completion for fish. Install: ${n} completion fish > ~/.config/fish/completions/${n}.fish`,
    `# Generated from ${n}'s own commands.`,
    `complete -c ${n} -f`,
    ...t.commands.map((c) => `complete -c ${n} -n __fish_use_subcommand -a ${c.name} -d ${sq(c.description)}`),
    ...t.flags.map((f) => `complete -c ${n} -n __fish_use_subcommand ${fishFlag(f)}`),
  ];
  for (const c of t.commands) {
    const when = `-n '__fish_seen_subcommand_from ${c.name}'`;
    for (const f of c.flags) lines.push(`complete -c ${n} ${when} ${fishFlag(f)}`);
    if (c.args === 'builders') lines.push(`complete -c ${n} ${when} -a '(command ${n} __builders 2>/dev/null)'`);
    if (c.args === 'files') lines.push(`complete -c ${n} ${when} -F`);
    if (Array.isArray(c.args)) lines.push(`complete -c ${n} ${when} -a ${sq(words(c.args))}`);
  }
  return lines.join('\n') + '\n';
}

function fishFlag(f: Flag): string {
  const names = f.names.map((x) => (x.startsWith('--') ? `-l ${x.slice(2)}` : `-s ${x.slice(1)}`)).join(' ');
  const value =
    f.value === 'choices'
      ? ` -x -a ${sq(words(f.choices))}`
      : f.value === 'path'
        ? ' -r -F'
        : f.value === 'text'
          ? ' -x'
          : '';
  return `${names}${value} -d ${sq(f.description)}`;
}
