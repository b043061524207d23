/**
 * Host key verification, pure: parse a pinned key (`SHA256:…` or an OpenSSH key line), parse known_hosts
 * (plain, `[host]:port`, wildcards, negation, hashed `|1|salt|hash`, `@revoked`), and decide whether an offered
 * key is accepted. Fail closed: anything not positively matched is refused.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** `SHA256:<base64 without padding>`, as OpenSSH prints it. */
export function fingerprintOf(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type inside an SSH public key blob (its first string), or undefined if the blob is malformed. */
export function keyTypeOf(keyBlob: Buffer): string | undefined {
  if (keyBlob.length < 4) return undefined;
  const len = keyBlob.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > keyBlob.length) return undefined;
  const type = keyBlob.subarray(4, 4 + len).toString('latin1');
  return /^[a-z0-9@.-]+$/.test(type) ? type : undefined;
}

export type PinnedHostKey =
  | { readonly kind: 'fingerprint'; readonly fingerprint: string }
  | { readonly kind: 'key'; readonly keyType: string; readonly blob: Buffer; readonly fingerprint: string };

const FINGERPRINT = /^SHA256:([A-Za-z0-9+/]{43})=?$/;
const KEY_TYPE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/;

/** A key given as `<type> <base64>`: checks that the blob decodes and carries the stated type. */
function parseKeyFields(type: string, b64: string): { keyType: string; blob: Buffer } | string {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return `the key data of a ${type} key is not base64`;
  const blob = Buffer.from(b64, 'base64');
  const inner = keyTypeOf(blob);
  if (inner !== type) return `the key data says ${inner ?? 'nothing readable'}, but the line says ${type}`;
  return { keyType: type, blob };
}

/**
 * Parses a pinned host key: `SHA256:…` (what `ssh-keygen -lf` or the agent's error message prints), or an OpenSSH
 * public key line `ssh-ed25519 AAAA… [comment]`, optionally with the host name in front as `ssh-keyscan` prints it.
 * Throws with the allowed forms on anything else.
 */
export function parsePinnedHostKey(text: string): PinnedHostKey {
  const s = text.trim();
  const fp = FINGERPRINT.exec(s);
  if (fp) return { kind: 'fingerprint', fingerprint: `SHA256:${fp[1]}` };
  const fields = s.split(/\s+/);
  const at = KEY_TYPE.test(fields[0]) ? 0 : fields.length > 2 && KEY_TYPE.test(fields[1]) ? 1 : -1;
  if (at >= 0 && fields[at + 1] !== undefined) {
    const parsed = parseKeyFields(fields[at], fields[at + 1]);
    if (typeof parsed !== 'string') return { kind: 'key', ...parsed, fingerprint: fingerprintOf(parsed.blob) };
    throw new Error(`hostKey "${abbreviate(s)}" is not a valid public key: ${parsed}`);
  }
  throw new Error(
    `hostKey "${abbreviate(s)}" is not understood: use a SHA256 fingerprint such as "SHA256:${'A'.repeat(43)}" ` +
      `(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) or a public key line such as "ssh-ed25519 AAAA…"`,
  );
}

function abbreviate(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

export type HostPattern =
  { readonly kind: 'hashed'; readonly salt: Buffer; readonly hash: Buffer } | { readonly kind: 'patterns'; readonly patterns: readonly string[] };

export interface KnownHostsEntry {
  readonly line: number;
  readonly marker: 'revoked' | 'cert-authority' | null;
  readonly hosts: HostPattern;
  readonly keyType: string;
  readonly blob: Buffer;
  readonly fingerprint: string;
}

export interface KnownHostsParseResult {
  readonly entries: readonly KnownHostsEntry[];
  /** Lines that are neither blank, comments nor valid entries: `line N: reason`. They are ignored. */
  readonly skipped: readonly string[];
}

/** Parses a known_hosts file. Junk lines are skipped and reported, never fatal. */
export function parseKnownHosts(text: string): KnownHostsParseResult {
  const entries: KnownHostsEntry[] = [];
  const skipped: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const s = raw.trim();
    if (s === '' || s.startsWith('#')) return;
    const fields = s.split(/\s+/);
    let marker: KnownHostsEntry['marker'] = null;
    if (fields[0].startsWith('@')) {
      const m = fields.shift()!;
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else return void skipped.push(`line ${line}: unknown marker ${m}`);
    }
    if (fields.length < 3) return void skipped.push(`line ${line}: expected "hosts keytype key"`);
    const [hostField, type, b64] = fields;
    if (!KEY_TYPE.test(type)) return void skipped.push(`line ${line}: unsupported key type ${type}`);
    const key = parseKeyFields(type, b64);
    if (typeof key === 'string') return void skipped.push(`line ${line}: ${key}`);
    const hosts = parseHostField(hostField);
    if (typeof hosts === 'string') return void skipped.push(`line ${line}: ${hosts}`);
    entries.push({ line, marker, hosts, keyType: key.keyType, blob: key.blob, fingerprint: fingerprintOf(key.blob) });
  });
  return { entries, skipped };
}

function parseHostField(field: string): HostPattern | string {
  if (field.startsWith('|')) {
    const m = /^\|1\|([A-Za-z0-9+/]+={0,2})\|([A-Za-z0-9+/]+={0,2})$/.exec(field);
    if (!m) return 'hashed host entry is not |1|salt|hash';
    const salt = Buffer.from(m[1], 'base64');
    const hash = Buffer.from(m[2], 'base64');
    if (salt.length !== 20 || hash.length !== 20) return 'hashed host entry has a bad salt or hash length';
    return { kind: 'hashed', salt, hash };
  }
  return { kind: 'patterns', patterns: field.split(',').filter((p) => p !== '') };
}

/** The name OpenSSH looks up in known_hosts: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** `*` and `?` wildcards, case-insensitive, like OpenSSH's match_pattern. */
function wildcardMatch(name: string, pattern: string): boolean {
  const re = pattern
    .toLowerCase()
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(name.toLowerCase());
}

/** Whether a known_hosts host field matches `host`:`port`. A matching negated pattern (`!x`) rules the line out. */
export function hostMatches(hosts: HostPattern, host: string, port: number): boolean {
  const name = knownHostsName(host, port);
  if (hosts.kind === 'hashed') {
    const h = createHmac('sha1', hosts.salt).update(name).digest();
    return timingSafeEqual(h, hosts.hash);
  }
  let matched = false;
  for (const p of hosts.patterns) {
    if (p.startsWith('!')) {
      if (wildcardMatch(name, p.slice(1))) return false;
    } else if (wildcardMatch(name, p)) {
      matched = true;
    }
  }
  return matched;
}

export type HostKeyPolicy =
  | { readonly kind: 'pinned'; readonly pin: PinnedHostKey }
  | { readonly kind: 'known-hosts'; readonly file: string; readonly entries: readonly KnownHostsEntry[] };

export interface HostKeyRejection {
  readonly ok: false;
  readonly kind: 'host-key-unknown' | 'host-key-mismatch' | 'host-key-revoked';
  readonly offeredType: string;
  readonly offeredFingerprint: string;
  /** What we would have accepted: fingerprints (with known_hosts line numbers where they come from a file). */
  readonly expected: readonly string[];
  readonly message: string;
}

export type HostKeyDecision = { readonly ok: true; readonly offeredType: string; readonly offeredFingerprint: string } | HostKeyRejection;

/** Decides whether the key `offered` (raw blob) is the right key for host:port under `policy`. */
export function verifyHostKey(host: string, port: number, offered: Buffer, policy: HostKeyPolicy): HostKeyDecision {
  const offeredFingerprint = fingerprintOf(offered);
  const offeredType = keyTypeOf(offered) ?? 'unknown-type';
  const pinHint = `hostKey: '${offeredFingerprint}'`;
  const where = `${host}:${port}`;
  const reject = (kind: HostKeyRejection['kind'], expected: string[], message: string): HostKeyRejection => ({
    ok: false,
    kind,
    offeredType,
    offeredFingerprint,
    expected,
    message,
  });

  if (policy.kind === 'pinned') {
    const pin = policy.pin;
    const same = pin.kind === 'fingerprint' ? pin.fingerprint === offeredFingerprint : pin.blob.equals(offered);
    if (same) return { ok: true, offeredType, offeredFingerprint };
    return reject(
      'host-key-mismatch',
      [pin.fingerprint],
      `host key mismatch for ${where}: the host offered ${offeredType} ${offeredFingerprint}, but hostKey pins ` +
        `${pin.fingerprint}. The host was reinstalled or someone is intercepting the connection. If the new key is ` +
        `expected, pin it: ${pinHint}`,
    );
  }

  const forHost = policy.entries.filter((e) => e.marker !== 'cert-authority' && hostMatches(e.hosts, host, port));
  const revoked = forHost.find((e) => e.marker === 'revoked' && e.blob.equals(offered));
  if (revoked) {
    return reject(
      'host-key-revoked',
      [],
      `host key for ${where} is revoked: the host offered ${offeredType} ${offeredFingerprint}, which ` +
        `${policy.file} marks @revoked (line ${revoked.line}). Refusing to connect.`,
    );
  }
  const keys = forHost.filter((e) => e.marker === null);
  if (keys.some((e) => e.blob.equals(offered))) return { ok: true, offeredType, offeredFingerprint };
  const name = knownHostsName(host, port);
  if (keys.length === 0) {
    return reject(
      'host-key-unknown',
      [],
      `unknown host key for ${where}: the host offered ${offeredType} ${offeredFingerprint}, and ${policy.file} ` +
        `has no entry for "${name}". If this is the right host, pin it: ${pinHint} (or add it to ${policy.file})`,
    );
  }
  const expected = keys.map((e) => `${e.keyType} ${e.fingerprint} (line ${e.line})`);
  return reject(
    'host-key-mismatch',
    expected,
    `host key mismatch for ${where}: the host offered ${offeredType} ${offeredFingerprint}, but ${policy.file} ` +
      `lists ${expected.join(', ')} for "${name}". The host was reinstalled or someone is intercepting the ` +
      `connection. If the new key is expected, pin it: ${pinHint} (or fix ${policy.file})`,
  );
}

/** Host key algorithms to offer, with the types we can verify first (so the server picks a key we know). */
export function preferredHostKeyAlgorithms(host: string, port: number, policy: HostKeyPolicy, defaults: readonly string[]): string[] {
  const types =
    policy.kind === 'pinned'
      ? policy.pin.kind === 'key'
        ? [policy.pin.keyType]
        : []
      : policy.entries.filter((e) => e.marker === null && hostMatches(e.hosts, host, port)).map((e) => e.keyType);
  const algos = types.flatMap((t) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]));
  const first = [...new Set(algos)].filter((a) => defaults.includes(a));
  return [...first, ...defaults.filter((a) => !first.includes(a))];
}
