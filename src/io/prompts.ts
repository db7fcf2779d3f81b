// Interactive prompts. Loaded only when a question has to be asked, so that --help,
// --version and unattended runs never load inquirer.
export interface Choice<T> {
  name: string;
  value: T;
  description?: string;
}

export interface Prompter {
  input(message: string, opts?: { default?: string; validate?: (v: string) => true | string }): Promise<string>;
  password(message: string): Promise<string>;
  confirm(message: string, def: boolean): Promise<boolean>;
  select<T>(message: string, choices: Choice<T>[], def?: T): Promise<T>;
}

export async function inquirerPrompter(): Promise<Prompter> {
  const p = await import('@inquirer/prompts');
  return {
    input: (message, opts = {}) => p.input({ message, default: opts.default, validate: opts.validate }),
    password: (message) => p.password({ message, mask: '*' }),
    confirm: (message, def) => p.confirm({ message, default: def }),
    select: <T>(message: string, choices: Choice<T>[], def?: T) => p.select<T>({ message, choices, default: def }),
  };
}
