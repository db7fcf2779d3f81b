// Signed access (init --access signed): this machine signs what it builds, and the builder's
// nix-daemon trusts that one public key instead of trusting the ssh user. It rests on Nix's
// trustless path: over ssh-ng, a builder that reports the user untrusted (Nix 2.15+,
// worker protocol 1.35) is sent the derivation's closure and asked to build it, and takes
// an input-addressed path from an untrusted user only with a signature by a key in its
// trusted-public-keys (build-remote.cc, `trustedOrLegacy`, from 2.16; daemon.cc checks the
// signatures of an untrusted client's paths whatever the client asks).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Exec } from '../io/exec.js';
import { StepFailed, type RunStep } from '../plan/plan.js';
import { atLeast, formatVersion, type Version } from './version.js';
import { effective, type NixConfig, type Scope } from './effective-config.js';

export interface SigningKey {
  /** The secret key file: mode 0600, beside the ssh key, never in the store. */
  secret: string;
  public: string;
  /** The key's name, the part before ':' in what Nix prints. */
  name: string;
}

export function signingKey(sshKeyPath: string): SigningKey {
  const dir = path.dirname(sshKeyPath);
  return {
    secret: path.join(dir, 'nix-signing-key'),
    public: path.join(dir, 'nix-signing-key.pub'),
    name: `nixremote-${os.hostname()}-1`,
  };
}

/** Why this pair of versions cannot do signed access (null: it can). */
export function signedUnsupported(local: Version | null, builder: Version | null): string | null {
  if (local && !atLeast(local, 2, 16))
    return `this machine's Nix ${formatVersion(local)} sends an untrusted builder the derivation alone, which it may not build; the trustless path that copies its closure came in Nix 2.16: upgrade Nix here`;
  if (builder && !atLeast(builder, 2, 15))
    return `the builder's Nix ${formatVersion(builder)} does not report whether it trusts the user (Nix 2.15 and later do), so Nix here takes it as trusted and its build is refused: upgrade Nix on the builder`;
  return null;
}

/** Makes the key pair once (nix-store --generate-binary-cache-key), whole or not at all. */
export function signingKeygenStep(exec: Exec, k: SigningKey): RunStep {
  return {
    kind: 'keygen',
    title: `Make this machine's signing key ${k.secret} (${k.name})`,
    detail: `nix-store --generate-binary-cache-key ${k.name} ${k.secret} ${k.public}`,
    run: async () => {
      const dir = path.dirname(k.secret);
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const tmp = fs.mkdtempSync(path.join(dir, '.nixremote-signing-'));
      try {
        const r = await exec('nix-store', [
          '--generate-binary-cache-key',
          k.name,
          path.join(tmp, 'sec'),
          path.join(tmp, 'pub'),
        ]);
        if (r.exitCode !== 0)
          throw new StepFailed('keygen', `nix-store --generate-binary-cache-key failed: ${r.stderr.trim()}`);
        fs.chmodSync(path.join(tmp, 'sec'), 0o600);
        fs.renameSync(path.join(tmp, 'pub'), k.public);
        fs.renameSync(path.join(tmp, 'sec'), k.secret);
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
}

/** What to add on the builder, as root, for each kind of builder. */
export function builderTrustWords(builder: string, publicKey: string): string {
  return [
    `On ${builder}, as root, make its nix-daemon trust this machine's signing key, then restart it:`,
    `  NixOS or nix-darwin, in its configuration (then nixos-rebuild switch / darwin-rebuild switch):`,
    `    nix.settings.extra-trusted-public-keys = [ "${publicKey}" ];`,
    `  elsewhere (Determinate Nix: /etc/nix/nix.custom.conf instead of nix.conf):`,
    `    echo 'extra-trusted-public-keys = ${publicKey}' >> /etc/nix/nix.conf`,
    `    systemctl restart nix-daemon    (macOS: launchctl kickstart -k system/org.nixos.nix-daemon)`,
    `It does not need ${'trusted-users'}: the key lets it take what this machine built and signed, nothing more.`,
  ].join('\n');
}

/** The daemon refused an untrusted user's path for want of a signature it trusts. */
export const UNTRUSTED_SIGNATURE =
  /lacks a signature by a trusted key|no signature is trusted|is not signed by a trusted key/;

/**
 * The public keys of the secret keys this machine's Nix signs with (secret-key-files and
 * extra-secret-key-files): an ed25519 secret key file is "name:base64(seed + public key)",
 * so the public key is its last 32 bytes under the same name.
 */
export function publicKeysOf(files: string[], read: (p: string) => string | null): string[] {
  const out: string[] = [];
  for (const f of files) {
    const text = read(f)?.trim();
    const m = text ? /^([^:\s]+):([A-Za-z0-9+/=]+)$/.exec(text) : null;
    if (!m) continue;
    const bytes = Buffer.from(m[2]!, 'base64');
    if (bytes.length === 64) out.push(`${m[1]}:${bytes.subarray(32).toString('base64')}`);
  }
  return out;
}

/** The secret key files the Nix that builds signs with: secret-key-files, plus every extra-secret-key-files. */
export function secretKeyFiles(cfg: NixConfig, scopes: Scope[]): string[] {
  return [effective(cfg, 'secret-key-files', scopes)?.value ?? '']
    .concat(
      (cfg.settings.get('extra-secret-key-files') ?? []).filter((x) => scopes.includes(x.scope)).map((x) => x.value),
    )
    .join(' ')
    .split(/\s+/)
    .filter(Boolean);
}
