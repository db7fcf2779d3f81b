// Text from another program (a builder's shell, Nix's protocol errors that quote the bytes
// they read) can hold NUL, escape sequences and other control bytes; on a terminal they
// would move the cursor or recolour it. Shown escaped, \xNN, with newlines and tabs kept.
export function printable(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control bytes are what this finds
  return s.replace(/[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
