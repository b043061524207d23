/**
 * The member's own SSH host key, which signs its side of the flow copy's handshake, and the fingerprints by which the
 * other side recognises it (`SHA256:…` of the OpenSSH public key blob, as `ssh-keygen -lf` prints).
 */
import { KeyObject, createHash, createPrivateKey, createPublicKey } from 'node:crypto';

export interface HostKey {
  readonly privateKey: KeyObject;
  /** The raw 32-byte ed25519 public key. */
  readonly publicRaw: Buffer;
  readonly fingerprint: string;
}

/** Reads SSH wire fields (uint32, length-prefixed strings) one after another. */
class SshReader {
  constructor(
    private readonly buf: Buffer,
    private at: number,
  ) {}

  uint32(): number {
    if (this.at + 4 > this.buf.length) throw new Error('truncated');
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  string(): Buffer {
    const len = this.uint32();
    if (this.at + len > this.buf.length) throw new Error('truncated');
    const v = this.buf.subarray(this.at, this.at + len);
    this.at += len;
    return v;
  }
}

const lengthPrefixed = (b: Buffer) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
};

/** The OpenSSH public key blob of an ed25519 key: string "ssh-ed25519", string key. */
export const ed25519Blob = (raw: Buffer) => Buffer.concat([lengthPrefixed(Buffer.from('ssh-ed25519')), lengthPrefixed(raw)]);

export const fingerprintOfEd25519 = (raw: Buffer) => `SHA256:${createHash('sha256').update(ed25519Blob(raw)).digest('base64').replace(/=+$/, '')}`;

export const ed25519PublicKey = (raw: Buffer): KeyObject =>
  createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });

/** Reads an unencrypted OpenSSH ed25519 private key file's text (what sshd's host keys are). */
export function parseOpenSshEd25519(text: string): HostKey {
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!m) throw new Error('not an OpenSSH private key');
  const buf = Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (buf.subarray(0, magic.length).toString('latin1') !== magic) throw new Error('not an openssh-key-v1 key');
  const r = new SshReader(buf, magic.length);
  const cipher = r.string();
  const kdf = r.string();
  r.string();
  if (cipher.toString() !== 'none' || kdf.toString() !== 'none') throw new Error('the key is encrypted');
  const count = r.uint32();
  if (count !== 1) throw new Error(`it holds ${count} keys`);
  r.string();
  const priv = new SshReader(r.string(), 0);
  if (priv.uint32() !== priv.uint32()) throw new Error('its check bytes differ');
  const type = priv.string();
  if (type.toString() !== 'ssh-ed25519') throw new Error(`it is a ${type.toString()} key, not ssh-ed25519`);
  const pub = priv.string();
  const secret = priv.string();
  if (pub.length !== 32 || secret.length !== 64 || !secret.subarray(32).equals(pub)) throw new Error('its ed25519 key is malformed');
  const privateKey = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: secret.subarray(0, 32).toString('base64url'), x: pub.toString('base64url') },
    format: 'jwk',
  });
  return { privateKey, publicRaw: Buffer.from(pub), fingerprint: fingerprintOfEd25519(pub) };
}
