/**
 * The flow copy's handshake and message protection, with real OpenSSH ed25519 host keys made by ssh-keygen: both
 * members prove their pinned host keys, a stranger's key, a signature over another session's transcript, a replayed,
 * reordered or altered message and a message of another session are refused with what went wrong.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HostKey, parseOpenSshEd25519 } from '../../runtime/flow-copy/host-key';
import { ClientHandshake, FrameReader, SecureChannel, ServerHandshake, frame } from '../../runtime/flow-copy/protocol';

const dir = mkdtempSync(path.join(os.tmpdir(), 'tula-flow-copy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keyPair(name: string): { key: HostKey; sshKeygenFingerprint: string } {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  const sshKeygenFingerprint = execFileSync('ssh-keygen', ['-l', '-f', `${file}.pub`], { encoding: 'utf8' }).split(' ')[1];
  return { key: parseOpenSshEd25519(readFileSync(file, 'utf8')), sshKeygenFingerprint };
}

const lb1 = keyPair('lb1');
const lb2 = keyPair('lb2');
const stranger = keyPair('stranger');

/** A full handshake: `client` connects to `server`; each pins what it is given. */
function handshake(client: HostKey, clientPins: string[], server: HostKey, serverPins: string[]) {
  const c = new ClientHandshake(client, clientPins);
  const s = new ServerHandshake(server, serverPins);
  const welcome = s.hello(c.hello());
  const { reply, keys: clientKeys } = c.welcome(welcome);
  const serverKeys = s.auth(reply);
  return { client: new SecureChannel(clientKeys), server: new SecureChannel(serverKeys), welcome, reply };
}

describe('the flow copy channel', () => {
  test('GIVEN an OpenSSH ed25519 host key file WHEN read THEN its fingerprint is the one ssh-keygen -l prints', () => {
    expect(lb1.key.fingerprint).toBe(lb1.sshKeygenFingerprint);
    expect(lb1.key.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  test('GIVEN both members pin each other WHEN they shake hands THEN each knows the other by its key and messages pass both ways, in order', () => {
    const { client, server } = handshake(lb1.key, [lb2.key.fingerprint], lb2.key, [lb1.key.fingerprint]);
    expect({ client: client.peerFingerprint, server: server.peerFingerprint }).toEqual({ client: lb2.key.fingerprint, server: lb1.key.fingerprint });
    const entries = { t: 'flows', e: [['flows_l2_tcp', '10.0.0.9', 40000, '10.0.1.100', 80, '02:00:00:00:00:0b']] };
    expect(server.open(client.seal(entries))).toEqual(entries);
    expect(server.open(client.seal({ t: 'ping' }))).toEqual({ t: 'ping' });
    expect(client.open(server.seal({ t: 'ack' }))).toEqual({ t: 'ack' });
  });

  test('GIVEN a stranger with a valid key of its own WHEN it connects THEN the server refuses its proof, naming its key and the pinned one', () => {
    const c = new ClientHandshake(stranger.key, [lb2.key.fingerprint]);
    const s = new ServerHandshake(lb2.key, [lb1.key.fingerprint]);
    const { reply } = c.welcome(s.hello(c.hello()));
    expect(() => s.auth(reply)).toThrow(`host key ${stranger.key.fingerprint} is not the pinned one (${lb1.key.fingerprint})`);
  });

  test('GIVEN a stranger posing as the server WHEN a member connects to it THEN the member refuses before sending anything', () => {
    const c = new ClientHandshake(lb1.key, [lb2.key.fingerprint]);
    const s = new ServerHandshake(stranger.key, [lb1.key.fingerprint]);
    expect(() => c.welcome(s.hello(c.hello()))).toThrow(`host key ${stranger.key.fingerprint} is not the pinned one (${lb2.key.fingerprint})`);
  });

  test("GIVEN a recorded proof of the real member WHEN a stranger replays it in a new session THEN the signature does not verify (it covers the server's fresh nonce)", () => {
    const recorded = handshake(lb1.key, [lb2.key.fingerprint], lb2.key, [lb1.key.fingerprint]).reply;
    const c = new ClientHandshake(stranger.key, [lb2.key.fingerprint]);
    const s = new ServerHandshake(lb2.key, [lb1.key.fingerprint]);
    s.hello(c.hello());
    expect(() => s.auth(recorded)).toThrow(`the signature of host key ${lb1.key.fingerprint} does not verify`);
  });

  test('GIVEN an authenticated session WHEN a message is replayed THEN it is refused as replayed', () => {
    const { client, server } = handshake(lb1.key, [lb2.key.fingerprint], lb2.key, [lb1.key.fingerprint]);
    const first = client.seal({ t: 'ping' });
    server.open(first);
    expect(() => server.open(first)).toThrow('message 0 when 1 was due (replayed or reordered)');
  });

  test('GIVEN an authenticated session WHEN messages arrive out of order THEN the later one is refused', () => {
    const { client, server } = handshake(lb1.key, [lb2.key.fingerprint], lb2.key, [lb1.key.fingerprint]);
    client.seal({ t: 'ping' });
    expect(() => server.open(client.seal({ t: 'ping' }))).toThrow('message 1 when 0 was due (replayed or reordered)');
  });

  test.each([
    ['a changed entry', (b: Buffer) => Buffer.from(b.toString('latin1').replace('10.0.1.100', '10.0.1.199'), 'latin1')],
    ['a changed sequence number', (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), b.subarray(8)])],
  ])('GIVEN an authenticated session WHEN %s reaches the server THEN the HMAC does not verify', (_what, alter) => {
    const { client, server } = handshake(lb1.key, [lb2.key.fingerprint], lb2.key, [lb1.key.fingerprint]);
    server.open(client.seal({ t: 'ping' }));
    const sealed = client.seal({ t: 'flows', e: [['flows_l2_tcp', '10.0.0.9', 40000, '10.0.1.100', 80, '02:00:00:00:00:0b']] });
    expect(() => server.open(alter(sealed))).toThrow('a message whose HMAC does not verify (altered, or from another session)');
  });

  test('GIVEN two sessions of the same members WHEN a message of the first is replayed into the second THEN the HMAC does not verify', () => {
    const one = handshake(lb1.key, [lb2.key.fingerprint], lb2.key, [lb1.key.fingerprint]);
    const two = handshake(lb1.key, [lb2.key.fingerprint], lb2.key, [lb1.key.fingerprint]);
    expect(() => two.server.open(one.client.seal({ t: 'ping' }))).toThrow('a message whose HMAC does not verify (altered, or from another session)');
  });

  test('GIVEN a stream of frames WHEN read in arbitrary pieces THEN the bodies come out whole; a frame over the limit is refused', () => {
    const reader = new FrameReader();
    const stream = Buffer.concat([frame(Buffer.from('one')), frame(Buffer.from('two'))]);
    const bodies = [...stream].flatMap((byte) => reader.push(Buffer.from([byte])));
    expect(bodies.map((b) => b.toString())).toEqual(['one', 'two']);
    const big = Buffer.alloc(4);
    big.writeUInt32BE(4097);
    expect(() => new FrameReader().push(big)).toThrow('a frame of 4097 bytes is over the limit of 4096');
  });
});
