/**
 * Pure host key logic against lines recorded from OpenSSH 9.2 (`ssh-keygen -l`, `ssh-keygen -H`).
 */
import {
  fingerprintOf,
  hostMatches,
  keyTypeOf,
  knownHostsName,
  parseKnownHosts,
  parsePinnedHostKey,
  preferredHostKeyAlgorithms,
  verifyHostKey,
  HostKeyPolicy,
} from '../../../agent/ssh/host-key';

// GIVEN keys and fingerprints recorded with ssh-keygen
const ED_LINE = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEBYXf7zpY9OwlYw0UaqDL2UPtGQK2FYYbk/0oto9IUx fixture';
const ED_FP = 'SHA256:Y0Jpx8GRKDozr2D3eEIzv9h8xGtHVsC1I5KbP0JRq+k';
const EC_LINE =
  'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBG5JPmn+C0fIs8+3hthQRS/xRjqV+hzh8a2gvM2JIxSnUOdKvRpQmUfQ5Rj3/d86sKre8awRepDJWIM/ancmPPM= fixture2';
const EC_FP = 'SHA256:dVd+yZzSSHp0Vf2JEYUS57uFvHOal55nZMbBN8rEbJo';
const ED_BLOB = Buffer.from(ED_LINE.split(' ')[1], 'base64');
const EC_BLOB = Buffer.from(EC_LINE.split(' ')[1], 'base64');
// `ssh-keygen -H` of "10.0.0.5 <ED>" and "[10.0.0.6]:2222 <EC>"
const HASHED = [
  '|1|ghu+/SnR+rIdUUJvj0gLrC+SAuA=|t8z0vBCYWg492ObeBMpMOi2Lnts= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEBYXf7zpY9OwlYw0UaqDL2UPtGQK2FYYbk/0oto9IUx',
  '|1|unPdfobkp4Fl6IxNSobuFbTOjJ0=|S8g1psUI5AtXw/yrzB2snND96V0= ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBG5JPmn+C0fIs8+3hthQRS/xRjqV+hzh8a2gvM2JIxSnUOdKvRpQmUfQ5Rj3/d86sKre8awRepDJWIM/ancmPPM=',
].join('\n');

describe('fingerprints and key blobs', () => {
  test('fingerprintOf matches ssh-keygen -l', () => {
    expect(fingerprintOf(ED_BLOB)).toBe(ED_FP);
    expect(fingerprintOf(EC_BLOB)).toBe(EC_FP);
  });

  test('keyTypeOf reads the type inside the blob', () => {
    expect(keyTypeOf(ED_BLOB)).toBe('ssh-ed25519');
    expect(keyTypeOf(EC_BLOB)).toBe('ecdsa-sha2-nistp256');
    expect(keyTypeOf(Buffer.from([0, 0, 0]))).toBeUndefined();
    expect(keyTypeOf(Buffer.from([0, 0, 1, 0, 65]))).toBeUndefined();
  });
});

describe('parsePinnedHostKey', () => {
  test.each([
    ['a SHA256 fingerprint', ED_FP],
    ['a fingerprint with base64 padding', `${ED_FP}=`],
    ['a fingerprint with blanks around it', `  ${ED_FP}\n`],
  ])('accepts %s', (_what, text) => {
    expect(parsePinnedHostKey(text)).toEqual({ kind: 'fingerprint', fingerprint: ED_FP });
  });

  test.each([
    ['a public key line with comment', ED_LINE],
    ['a public key line without comment', ED_LINE.split(' ').slice(0, 2).join(' ')],
    ['an ssh-keyscan line (host in front)', `10.0.0.5 ${ED_LINE.split(' ').slice(0, 2).join(' ')}`],
  ])('accepts %s', (_what, text) => {
    expect(parsePinnedHostKey(text)).toEqual({ kind: 'key', keyType: 'ssh-ed25519', blob: ED_BLOB, fingerprint: ED_FP });
  });

  test.each([
    [
      'an MD5 fingerprint',
      'MD5:12:34:56',
      'hostKey "MD5:12:34:56" is not understood: use a SHA256 fingerprint such as "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) or a public key line such as "ssh-ed25519 AAAA…"',
    ],
    [
      'a short fingerprint',
      'SHA256:abc',
      'hostKey "SHA256:abc" is not understood: use a SHA256 fingerprint such as "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) or a public key line such as "ssh-ed25519 AAAA…"',
    ],
    [
      'a key line whose blob has another type',
      `ssh-ed25519 ${EC_LINE.split(' ')[1]}`,
      'hostKey "ssh-ed25519 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyN..." is not a valid public key: the key data says ecdsa-sha2-nistp256, but the line says ssh-ed25519',
    ],
    ['a key line with junk data', 'ssh-ed25519 !!!', 'hostKey "ssh-ed25519 !!!" is not a valid public key: the key data of a ssh-ed25519 key is not base64'],
  ])('rejects %s', (_what, text, message) => {
    expect(() => parsePinnedHostKey(text)).toThrow(new Error(message));
  });
});

describe('parseKnownHosts', () => {
  test('reads plain, bracketed, hashed, wildcard, negated and marker lines, and skips junk', () => {
    // GIVEN a known_hosts file with every kind of line
    const text = [
      '# comment',
      '',
      `10.0.0.5,web1 ${ED_LINE}`,
      `[10.0.0.6]:2222 ${EC_LINE}`,
      HASHED.split('\n')[0],
      `*.lab,!bad.lab ${ED_LINE}`,
      `@revoked * ${EC_LINE}`,
      `@cert-authority *.lab ${ED_LINE}`,
      '@bogus x ssh-ed25519 AAAA',
      'onlyhost ssh-ed25519',
      `h ssh-foo ${ED_LINE.split(' ')[1]}`,
      '|1|no-hash ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEBYXf7zpY9OwlYw0UaqDL2UPtGQK2FYYbk/0oto9IUx',
    ].join('\n');
    // WHEN parsed
    const r = parseKnownHosts(text);
    // THEN
    expect(r.entries.map((e) => [e.line, e.marker, e.keyType, e.fingerprint, e.hosts.kind])).toEqual([
      [3, null, 'ssh-ed25519', ED_FP, 'patterns'],
      [4, null, 'ecdsa-sha2-nistp256', EC_FP, 'patterns'],
      [5, null, 'ssh-ed25519', ED_FP, 'hashed'],
      [6, null, 'ssh-ed25519', ED_FP, 'patterns'],
      [7, 'revoked', 'ecdsa-sha2-nistp256', EC_FP, 'patterns'],
      [8, 'cert-authority', 'ssh-ed25519', ED_FP, 'patterns'],
    ]);
    expect(r.skipped).toEqual([
      'line 9: unknown marker @bogus',
      'line 10: expected "hosts keytype key"',
      'line 11: unsupported key type ssh-foo',
      'line 12: hashed host entry is not |1|salt|hash',
    ]);
  });
});

describe('hostMatches', () => {
  const [hashed5, hashed6] = parseKnownHosts(HASHED).entries;
  const patterns = (s: string) => parseKnownHosts(`${s} ${ED_LINE}`).entries[0].hosts;

  test('knownHostsName brackets non-default ports', () => {
    expect(knownHostsName('10.0.0.5', 22)).toBe('10.0.0.5');
    expect(knownHostsName('10.0.0.5', 2222)).toBe('[10.0.0.5]:2222');
  });

  test.each([
    ['hashed 10.0.0.5', hashed5.hosts, '10.0.0.5', 22, true],
    ['hashed 10.0.0.5, other port', hashed5.hosts, '10.0.0.5', 2222, false],
    ['hashed 10.0.0.5, other host', hashed5.hosts, '10.0.0.50', 22, false],
    ['hashed [10.0.0.6]:2222', hashed6.hosts, '10.0.0.6', 2222, true],
    ['hashed [10.0.0.6]:2222 on port 22', hashed6.hosts, '10.0.0.6', 22, false],
    ['plain list', patterns('10.0.0.5,web1'), 'web1', 22, true],
    ['plain list is case-insensitive', patterns('Web1'), 'WEB1', 22, true],
    ['bracketed port', patterns('[10.0.0.6]:2222'), '10.0.0.6', 2222, true],
    ['plain entry does not match a non-default port', patterns('10.0.0.6'), '10.0.0.6', 2222, false],
    ['wildcard', patterns('*.lab'), 'be1.lab', 22, true],
    ['? wildcard', patterns('be?.lab'), 'be1.lab', 22, true],
    ['dots are literal', patterns('10.0.0.5'), '10a0b0c5', 22, false],
    ['negation wins', patterns('*.lab,!bad.lab'), 'bad.lab', 22, false],
  ])('%s', (_what, hosts, host, port, expected) => {
    expect(hostMatches(hosts, host, port)).toBe(expected);
  });
});

describe('verifyHostKey', () => {
  const pinned = (text: string): HostKeyPolicy => ({ kind: 'pinned', pin: parsePinnedHostKey(text) });
  const known = (text: string): HostKeyPolicy => ({ kind: 'known-hosts', file: '/k/known_hosts', entries: parseKnownHosts(text).entries });

  test.each([
    ['pinned fingerprint', pinned(ED_FP)],
    ['pinned key line', pinned(ED_LINE)],
    ['plain known_hosts entry', known(`10.0.0.5 ${ED_LINE}`)],
    ['hashed known_hosts entry', known(HASHED)],
    ['second of two keys for the host', known(`10.0.0.5 ${EC_LINE}\n10.0.0.5 ${ED_LINE}`)],
  ])('accepts the right key: %s', (_what, policy) => {
    expect(verifyHostKey('10.0.0.5', 22, ED_BLOB, policy)).toEqual({ ok: true, offeredType: 'ssh-ed25519', offeredFingerprint: ED_FP });
  });

  test('rejects a key that differs from the pinned one', () => {
    expect(verifyHostKey('10.0.0.5', 22, EC_BLOB, pinned(ED_FP))).toEqual({
      ok: false,
      kind: 'host-key-mismatch',
      offeredType: 'ecdsa-sha2-nistp256',
      offeredFingerprint: EC_FP,
      expected: [ED_FP],
      message:
        `host key mismatch for 10.0.0.5:22: the host offered ecdsa-sha2-nistp256 ${EC_FP}, but hostKey pins ${ED_FP}. ` +
        `The host was reinstalled or someone is intercepting the connection. If the new key is expected, pin it: hostKey: '${EC_FP}'`,
    });
  });

  test('rejects a host without any entry as unknown', () => {
    expect(verifyHostKey('10.0.0.9', 22, ED_BLOB, known(`10.0.0.5 ${ED_LINE}`))).toEqual({
      ok: false,
      kind: 'host-key-unknown',
      offeredType: 'ssh-ed25519',
      offeredFingerprint: ED_FP,
      expected: [],
      message:
        `unknown host key for 10.0.0.9:22: the host offered ssh-ed25519 ${ED_FP}, and /k/known_hosts has no entry for ` +
        `"10.0.0.9". If this is the right host, pin it: hostKey: '${ED_FP}' (or add it to /k/known_hosts)`,
    });
  });

  test('rejects a known host that offers another key as a mismatch, naming the listed keys', () => {
    const d = verifyHostKey('10.0.0.5', 22, EC_BLOB, known(`# c\n10.0.0.5 ${ED_LINE}`));
    expect(d).toMatchObject({ ok: false, kind: 'host-key-mismatch', expected: [`ssh-ed25519 ${ED_FP} (line 2)`] });
    expect(d.ok === false && d.message).toBe(
      `host key mismatch for 10.0.0.5:22: the host offered ecdsa-sha2-nistp256 ${EC_FP}, but /k/known_hosts lists ` +
        `ssh-ed25519 ${ED_FP} (line 2) for "10.0.0.5". The host was reinstalled or someone is intercepting the ` +
        `connection. If the new key is expected, pin it: hostKey: '${EC_FP}' (or fix /k/known_hosts)`,
    );
  });

  test('@revoked wins over a matching entry', () => {
    const d = verifyHostKey('10.0.0.5', 22, ED_BLOB, known(`10.0.0.5 ${ED_LINE}\n@revoked * ${ED_LINE}`));
    expect(d).toMatchObject({ ok: false, kind: 'host-key-revoked' });
    expect(d.ok === false && d.message).toBe(
      `host key for 10.0.0.5:22 is revoked: the host offered ssh-ed25519 ${ED_FP}, which /k/known_hosts marks @revoked (line 2). Refusing to connect.`,
    );
  });

  test('@cert-authority lines never accept a plain host key', () => {
    expect(verifyHostKey('10.0.0.5', 22, ED_BLOB, known(`@cert-authority * ${ED_LINE}`))).toMatchObject({ ok: false, kind: 'host-key-unknown' });
  });

  test('a plain entry does not vouch for another port', () => {
    expect(verifyHostKey('10.0.0.5', 2222, ED_BLOB, known(`10.0.0.5 ${ED_LINE}`))).toMatchObject({ ok: false, kind: 'host-key-unknown' });
  });
});

describe('preferredHostKeyAlgorithms', () => {
  const defaults = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

  test('puts the known key types first', () => {
    const policy: HostKeyPolicy = { kind: 'known-hosts', file: 'f', entries: parseKnownHosts(`h ${EC_LINE}`).entries };
    expect(preferredHostKeyAlgorithms('h', 22, policy, defaults)).toEqual(['ecdsa-sha2-nistp256', 'ssh-ed25519', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
  });

  test('keeps the defaults for a pinned fingerprint', () => {
    expect(preferredHostKeyAlgorithms('h', 22, { kind: 'pinned', pin: parsePinnedHostKey(EC_FP) }, defaults)).toEqual(defaults);
  });
});
