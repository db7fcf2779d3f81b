// What an entry of the catalogue is, and what it is matched against: the types the
// entries (src/path/failures/) and the matcher (catalogue.ts) share.

/** Who prints the text an entry matches. */
export type Source = 'ssh' | 'sshd' | 'shell' | 'nix' | 'sqlite' | 'fs' | 'hook';

/** The step whose output is being read: some texts mean something only in one. */
export type Stage = 'login' | 'ping' | 'build' | 'probe';

/** What a step printed and how it ended. */
export interface Output {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** The builder's names, for the causes and fixes. */
export interface Names {
  /** The builder's name (the store URI's host, the ssh alias). */
  name: string;
  user?: string | null;
  key?: string | null;
  /** ssh or ssh-ng. */
  protocol?: string;
  /** The public keys this machine signs what it builds with (signed access). */
  signingKeys?: string[];
}

export interface Entry {
  id: string;
  from: Source;
  /** The program's own wording. Absent: the entry is about silence (see `silent`). */
  pattern?: RegExp;
  /** Matches only output with nothing on stdout and stderr. */
  silent?: boolean;
  /** Matches only these exit codes. */
  exit?: number[];
  /** Matches only in these steps. */
  stages?: Stage[];
  /** The versions whose wording the pattern matches, and the source file it is from. */
  versions: string;
  /** `said` is the line that matched, `text` all of stdout and stderr. */
  cause: (n: Names, said: string, text: string) => string;
  fix: (n: Names, said: string, text: string) => string;
}
