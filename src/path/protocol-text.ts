// What Nix's protocol errors say the builder's shell printed. Nix quotes what it read
// instead of its handshake: "protocol mismatch ..., got 'TEXT'" holds the text (2.4+,
// src/libstore/legacy-ssh-store.cc, serve-protocol-connection.cc); "serialised integer N
// is too large for type ..." (2.3, src/libutil/serialise.hh) holds eight bytes of it as a
// little-endian number.
export function decodeProtocolError(message: string): string | null {
  const got = /protocol mismatch[^\n]*?got '([^']*)'/.exec(message);
  // Nix quotes the whole buffer it read: the text, then its own handshake bytes (and,
  // when the message wraps, its indentation). Keep the printable text before those.
  if (got) return got[1]!.split(/[^\x20-\x7e\n\t]/)[0]!.trimEnd();
  const m = /serialised integer (\d+) is too large/.exec(message);
  if (m) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(m[1]!));
    return b.toString('latin1').replace(/\0+$/, '');
  }
  return null;
}
