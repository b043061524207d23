/**
 * The flow copy's trust, as the agent reads it where Terraform runs: the other member's pinned SSH host key becomes
 * the ed25519 fingerprints its runtime accepts; a pin the channel cannot use fails the apply with what to pin instead.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { peerHostKeys } from '../../agent/tasks/flow-copy';

const dir = mkdtempSync(path.join(os.tmpdir(), 'tula-peer-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function key(type: 'ed25519' | 'rsa', name: string): { line: string; fingerprint: string } {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', name, '-f', file]);
  const fingerprint = execFileSync('ssh-keygen', ['-l', '-f', `${file}.pub`], { encoding: 'utf8' }).split(' ')[1];
  return { line: readFileSync(`${file}.pub`, 'utf8').trim(), fingerprint };
}

const ed = key('ed25519', 'lb2-ed');
const rsa = key('rsa', 'lb2-rsa');
const other = key('ed25519', 'lb3-ed');
const peer = { host: '10.0.1.3', port: 22 };

describe("the other member's host key for the flow copy", () => {
  test.each([
    ['a SHA256 fingerprint', ed.fingerprint],
    ['an ssh-ed25519 key line', ed.line],
  ])('GIVEN hostKey as %s THEN its fingerprint is accepted', (_what, hostKey) => {
    expect(peerHostKeys({ ...peer, hostKey })).toEqual({ keys: [ed.fingerprint] });
  });

  test('GIVEN hostKey as an RSA key line THEN the apply is refused with what to pin', () => {
    expect(peerHostKeys({ ...peer, hostKey: rsa.line })).toEqual({
      problem:
        "the other member's hostKey pins an ssh-rsa key; the flow copy authenticates the other member by its ed25519 SSH host key (ssh-ed25519): pin that one (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)",
    });
  });

  test("GIVEN a known_hosts file THEN the peer's ed25519 keys on its host and port are accepted, not its RSA key, another host's or a revoked one", () => {
    const file = path.join(dir, 'known_hosts');
    const [type, b64] = ed.line.split(' ');
    writeFileSync(
      file,
      [
        `10.0.1.3 ${rsa.line.split(' ').slice(0, 2).join(' ')}`,
        `10.0.1.3 ${type} ${b64}`,
        `10.0.1.4 ${other.line.split(' ').slice(0, 2).join(' ')}`,
        `@revoked 10.0.1.3 ${other.line.split(' ').slice(0, 2).join(' ')}`,
        `10.0.1.3 ${other.line.split(' ').slice(0, 2).join(' ')}`,
        '',
      ].join('\n'),
    );
    expect(peerHostKeys({ ...peer, knownHostsFile: file })).toEqual({ keys: [ed.fingerprint] });
    expect(peerHostKeys({ ...peer, port: 2222, knownHostsFile: file })).toEqual({
      problem: `${file} lists no ssh-ed25519 key for 10.0.1.3:2222; the flow copy authenticates the other member by its ed25519 SSH host key (ssh-ed25519): add it (ssh-keyscan -t ed25519 10.0.1.3)`,
    });
  });

  test('GIVEN a known_hosts file that cannot be read THEN the apply is refused naming it', () => {
    expect(peerHostKeys({ ...peer, knownHostsFile: path.join(dir, 'missing') })).toEqual({
      problem: `cannot read the other member's knownHostsFile ${path.join(dir, 'missing')}: ENOENT`,
    });
  });
});
