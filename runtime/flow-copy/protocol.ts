/**
 * The flow copy's wire protocol, without sockets. Frames are a 4-byte length and a body. The handshake (JSON bodies)
 * authenticates both members by their SSH host keys: each side sends a fresh nonce and an ephemeral X25519 key, and
 * signs, with its ed25519 host key, the transcript of both nonces and both ephemeral keys; the other side accepts the
 * signature only from a key whose fingerprint it pins. The X25519 secret then keys an HMAC-SHA256 per direction.
 * Every later body is `sequence (8 bytes) | HMAC (32) | JSON`: the HMAC covers the sequence and the JSON, and the
 * receiver takes exactly the next sequence number, so a replayed, reordered or altered message ends the session.
 * No secret is ever stored: the keys live for one connection.
 */
import {
  KeyObject,
  createHash,
  createHmac,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  sign,
  timingSafeEqual,
  verify,
} from 'node:crypto';
import { HostKey, ed25519PublicKey, fingerprintOfEd25519 } from './host-key';

export const PROTOCOL = 'tula-dsr flow copy 1';
/** A handshake body is small; a flows message holds at most MAX_ENTRIES_PER_MESSAGE entries. */
export const MAX_HANDSHAKE_FRAME = 4096;
export const MAX_FRAME = 4 * 1024 * 1024;
export const MAX_ENTRIES_PER_MESSAGE = 5000;

export class ProtocolError extends Error {}

/** `body` with its length in front. */
export function frame(body: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

/** Cuts a byte stream into frame bodies; refuses a frame longer than the current limit. */
export class FrameReader {
  private buffer: Buffer = Buffer.alloc(0);
  limit = MAX_HANDSHAKE_FRAME;

  push(chunk: Buffer): Buffer[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    const bodies: Buffer[] = [];
    while (this.buffer.length >= 4) {
      const len = this.buffer.readUInt32BE(0);
      if (len > this.limit) throw new ProtocolError(`a frame of ${len} bytes is over the limit of ${this.limit}`);
      if (this.buffer.length < 4 + len) break;
      bodies.push(this.buffer.subarray(4, 4 + len));
      this.buffer = this.buffer.subarray(4 + len);
    }
    return bodies;
  }
}

const b64 = (b: Buffer) => b.toString('base64');
function bytes(value: unknown, length: number, what: string): Buffer {
  const b = typeof value === 'string' && /^[A-Za-z0-9+/]+=*$/.test(value) ? Buffer.from(value, 'base64') : null;
  if (!b || b.length !== length) throw new ProtocolError(`${what} is not ${length} bytes of base64`);
  return b;
}

export function parseJson(body: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ProtocolError(`${what} is not JSON`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new ProtocolError(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

interface Ephemeral {
  readonly nonce: Buffer;
  readonly privateKey: KeyObject;
  readonly publicRaw: Buffer;
}

function ephemeral(): Ephemeral {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { nonce: randomBytes(32), privateKey, publicRaw: Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url') };
}

const createX25519 = (raw: Buffer): KeyObject => createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });

function transcript(client: { nonce: Buffer; eph: Buffer }, server: { nonce: Buffer; eph: Buffer }): Buffer {
  return createHash('sha256').update(PROTOCOL).update(client.nonce).update(client.eph).update(server.nonce).update(server.eph).digest();
}

const signed = (role: 'client' | 'server', t: Buffer) => Buffer.concat([Buffer.from(`${PROTOCOL} ${role}\0`), t]);

/** The authenticated session both sides derive: one key per direction, and the peer's key fingerprint. */
export interface SessionKeys {
  readonly sendKey: Buffer;
  readonly receiveKey: Buffer;
  readonly peerFingerprint: string;
}

function keys(role: 'client' | 'server', own: Ephemeral, peerEph: Buffer, t: Buffer, peerFingerprint: string): SessionKeys {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: own.privateKey, publicKey: createX25519(peerEph) });
  } catch {
    throw new ProtocolError('the ephemeral key is not a usable X25519 key');
  }
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', shared, t, `${PROTOCOL} ${info}`, 32));
  const c2s = derive('client to server');
  const s2c = derive('server to client');
  return role === 'client' ? { sendKey: c2s, receiveKey: s2c, peerFingerprint } : { sendKey: s2c, receiveKey: c2s, peerFingerprint };
}

/** Checks the peer's host key against the pinned fingerprints and its signature over the transcript. */
function checkPeer(role: 'client' | 'server', message: Record<string, unknown>, t: Buffer, accepted: readonly string[]): string {
  const peerRaw = bytes(message.key, 32, 'the host key');
  const fingerprint = fingerprintOfEd25519(peerRaw);
  if (!accepted.includes(fingerprint)) throw new ProtocolError(`host key ${fingerprint} is not the pinned one (${accepted.join(' or ')})`);
  const sig = bytes(message.sig, 64, 'the signature');
  let good: boolean;
  try {
    good = verify(null, signed(role, t), ed25519PublicKey(peerRaw), sig);
  } catch {
    good = false;
  }
  if (!good) throw new ProtocolError(`the signature of host key ${fingerprint} does not verify`);
  return fingerprint;
}

/** The client's side of the handshake: hello, then (given the server's welcome) its own proof and the session. */
export class ClientHandshake {
  private readonly own = ephemeral();

  constructor(
    private readonly hostKey: HostKey,
    private readonly accepted: readonly string[],
  ) {}

  hello(): Buffer {
    return Buffer.from(JSON.stringify({ t: 'hello', v: PROTOCOL, nonce: b64(this.own.nonce), eph: b64(this.own.publicRaw) }));
  }

  /** Checks the server's welcome; returns the client's proof to send and the session keys. */
  welcome(body: Buffer): { reply: Buffer; keys: SessionKeys } {
    const m = parseJson(body, 'the welcome');
    if (m.t !== 'welcome') throw new ProtocolError(`expected a welcome, got ${JSON.stringify(m.t)}`);
    const server = { nonce: bytes(m.nonce, 32, 'the nonce'), eph: bytes(m.eph, 32, 'the ephemeral key') };
    const t = transcript({ nonce: this.own.nonce, eph: this.own.publicRaw }, server);
    const fingerprint = checkPeer('server', m, t, this.accepted);
    const reply = Buffer.from(
      JSON.stringify({ t: 'auth', key: b64(this.hostKey.publicRaw), sig: b64(sign(null, signed('client', t), this.hostKey.privateKey)) }),
    );
    return { reply, keys: keys('client', this.own, server.eph, t, fingerprint) };
  }
}

/** The server's side: (given the hello) its welcome, then (given the client's proof) the session. */
export class ServerHandshake {
  private readonly own = ephemeral();
  private t: Buffer | null = null;
  private clientEph: Buffer | null = null;

  constructor(
    private readonly hostKey: HostKey,
    private readonly accepted: readonly string[],
  ) {}

  hello(body: Buffer): Buffer {
    const m = parseJson(body, 'the hello');
    if (m.t !== 'hello' || m.v !== PROTOCOL) throw new ProtocolError(`expected a hello of ${PROTOCOL}, got ${JSON.stringify(m.t)} ${JSON.stringify(m.v)}`);
    const client = { nonce: bytes(m.nonce, 32, 'the nonce'), eph: bytes(m.eph, 32, 'the ephemeral key') };
    this.clientEph = client.eph;
    this.t = transcript(client, { nonce: this.own.nonce, eph: this.own.publicRaw });
    return Buffer.from(
      JSON.stringify({
        t: 'welcome',
        nonce: b64(this.own.nonce),
        eph: b64(this.own.publicRaw),
        key: b64(this.hostKey.publicRaw),
        sig: b64(sign(null, signed('server', this.t), this.hostKey.privateKey)),
      }),
    );
  }

  auth(body: Buffer): SessionKeys {
    if (!this.t || !this.clientEph) throw new ProtocolError('an auth before the hello');
    const m = parseJson(body, 'the auth');
    if (m.t !== 'auth') throw new ProtocolError(`expected an auth, got ${JSON.stringify(m.t)}`);
    const fingerprint = checkPeer('client', m, this.t, this.accepted);
    return keys('server', this.own, this.clientEph, this.t, fingerprint);
  }
}

const SEQ_BYTES = 8;
const MAC_BYTES = 32;

/** Seals outgoing and opens incoming messages of one session, with sequence numbers. */
export class SecureChannel {
  private sendSeq = 0n;
  private receiveSeq = 0n;

  constructor(private readonly keys: SessionKeys) {}

  get peerFingerprint(): string {
    return this.keys.peerFingerprint;
  }

  seal(message: object): Buffer {
    const payload = Buffer.from(JSON.stringify(message));
    const seq = Buffer.alloc(SEQ_BYTES);
    seq.writeBigUInt64BE(this.sendSeq++);
    const mac = createHmac('sha256', this.keys.sendKey).update(seq).update(payload).digest();
    return Buffer.concat([seq, mac, payload]);
  }

  /** The message of a sealed body; throws on a bad HMAC or any sequence number but the next one. */
  open(body: Buffer): Record<string, unknown> {
    if (body.length < SEQ_BYTES + MAC_BYTES) throw new ProtocolError('a message shorter than its header');
    const seq = body.subarray(0, SEQ_BYTES);
    const mac = body.subarray(SEQ_BYTES, SEQ_BYTES + MAC_BYTES);
    const payload = body.subarray(SEQ_BYTES + MAC_BYTES);
    const expected = createHmac('sha256', this.keys.receiveKey).update(seq).update(payload).digest();
    if (!timingSafeEqual(mac, expected)) throw new ProtocolError('a message whose HMAC does not verify (altered, or from another session)');
    const n = seq.readBigUInt64BE(0);
    if (n !== this.receiveSeq) throw new ProtocolError(`message ${n} when ${this.receiveSeq} was due (replayed or reordered)`);
    this.receiveSeq++;
    return parseJson(payload, 'the message');
  }
}
