// What doctor needs of a private key in OpenSSH's own format, read without running
// ssh-keygen: whether it has a passphrase, and its public half. The layout is OpenSSH's
// PROTOCOL.key: "openssh-key-v1\0", then the strings ciphername, kdfname, kdfoptions, a
// uint32 count, that many public key blobs, and the (possibly encrypted) private section,
// which begins with two equal uint32 check numbers when it is not encrypted.
import { hostKeyFromBlob, type HostKey } from './host-key.js';

export interface OpenSshKey {
  /** The cipher of the private section: "none" means no passphrase. */
  cipher: string;
  publicKey: HostKey;
}

const MAGIC = 'openssh-key-v1\0';

/** null when the text is not a well-formed OpenSSH private key (PEM and others included). */
export function readOpenSshKey(text: string): OpenSshKey | null {
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!m) return null;
  const b = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  if (b.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) return null;
  let at = MAGIC.length;
  const bytes = (): Buffer | null => {
    if (at + 4 > b.length) return null;
    const n = b.readUInt32BE(at);
    if (at + 4 + n > b.length) return null;
    const out = b.subarray(at + 4, at + 4 + n);
    at += 4 + n;
    return out;
  };
  const cipher = bytes()?.toString('latin1');
  const kdf = bytes();
  const kdfOptions = bytes();
  if (cipher === undefined || !kdf || !kdfOptions || at + 4 > b.length) return null;
  const count = b.readUInt32BE(at);
  at += 4;
  if (count < 1) return null;
  const pub = bytes();
  for (let i = 1; i < count; i++) if (!bytes()) return null;
  const secret = bytes();
  if (!pub || !secret) return null;
  // Unencrypted, the private section opens with the same check number twice.
  if (cipher === 'none' && (secret.length < 8 || secret.readUInt32BE(0) !== secret.readUInt32BE(4))) return null;
  try {
    return { cipher, publicKey: hostKeyFromBlob(pub) };
  } catch {
    return null;
  }
}
