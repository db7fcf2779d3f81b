// Host keys as OpenSSH writes them: a type name and the base64 of the wire-format blob.
import { createHash } from 'node:crypto';

export interface HostKey {
  type: string; // e.g. ssh-ed25519
  base64: string; // the blob, base64
}

/** The type name is the first string inside the SSH wire-format key blob (RFC 4253 6.6). */
export function hostKeyFromBlob(blob: Buffer): HostKey {
  if (blob.length < 4) throw new Error('host key blob is too short');
  const n = blob.readUInt32BE(0);
  if (n <= 0 || n > 64 || 4 + n > blob.length) throw new Error('host key blob is malformed');
  return { type: blob.subarray(4, 4 + n).toString('latin1'), base64: blob.toString('base64') };
}

/** As `ssh-keygen -lf` prints it: SHA256 of the blob, base64 without padding. */
export function fingerprint(key: HostKey): string {
  const digest = createHash('sha256').update(Buffer.from(key.base64, 'base64')).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

/** "type base64", the form of a known_hosts key and of an authorized_keys key. */
export function keyLine(key: HostKey): string {
  return `${key.type} ${key.base64}`;
}

/** A public key line "type base64 [comment]" back into a key; null when it is not one. */
export function parseKeyLine(line: string): HostKey | null {
  const m = /^\s*(\S+)\s+([A-Za-z0-9+/]+={0,2})(\s.*)?$/.exec(line);
  if (!m) return null;
  try {
    const key = hostKeyFromBlob(Buffer.from(m[2]!, 'base64'));
    return key.type === m[1] ? key : null;
  } catch {
    return null;
  }
}

/** The machines file's 8th field: base64 of the known_hosts key text (Nix decodes it). */
export function machinesHostKeyField(key: HostKey): string {
  return Buffer.from(keyLine(key)).toString('base64');
}

export function hostKeyFromMachinesField(field: string): HostKey | null {
  return parseKeyLine(Buffer.from(field, 'base64').toString('utf8'));
}
