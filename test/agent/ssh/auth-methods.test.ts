/**
 * The agent asks the server only for the authentication method its target names: the key file's (publickey) or
 * ssh-agent's keys, never `none` first, which costs a round trip and a refusal on every connection. Real sshd
 * does not log a refused `none`, so the server here is ssh2's, on loopback, recording each request it gets.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server } from 'ssh2';
import { connect } from '../../../agent/ssh/connection';
import { waitFor } from '../../../lab/exec';

let dir: string;
let server: Server;
let port: number;
let hostKey: string;
const requests: string[] = [];

function keygen(name: string): string {
  const file = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', file]);
  return file;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tula-auth-methods-'));
  const hostKeyFile = keygen('host');
  hostKey = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKeyFile}.pub`])
    .toString()
    .split(' ')[1];
  server = new Server({ hostKeys: [readFileSync(hostKeyFile)] }, (client) => {
    client.on('authentication', (ctx) => {
      requests.push(ctx.method === 'publickey' ? `publickey${ctx.signature ? ' signed' : ' query'}` : ctx.method);
      if (ctx.method === 'publickey') ctx.accept();
      else ctx.reject(['publickey']);
    });
    client.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => (requests.length = 0));

describe('the authentication requests of a connection', () => {
  test('GIVEN a key file WHEN the agent connects THEN it asks for publickey only: a query, then the signed request', async () => {
    const key = keygen('client');

    const connection = await connect({ host: '127.0.0.1', port, user: 'root', privateKeyPath: key, hostKey }, { retries: 0 });
    await connection.close();

    expect(requests).toEqual(['publickey query', 'publickey signed']);
  });

  test('GIVEN ssh-agent WHEN the agent connects THEN it asks for publickey only, with the key ssh-agent holds', async () => {
    const sock = join(dir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      const listening = await waitFor(() => {
        try {
          execFileSync('ssh-add', ['-l'], { env: { SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
          return true;
        } catch (error) {
          // 1: the agent answers and holds no key yet; 2: it is not listening yet
          return (error as { status?: number }).status === 1;
        }
      }, 5000);
      expect(listening).toBe(true);
      execFileSync('ssh-add', ['-q', keygen('agent-key')], { env: { SSH_AUTH_SOCK: sock } });

      const connection = await connect({ host: '127.0.0.1', port, user: 'root', hostKey }, { retries: 0, env: { SSH_AUTH_SOCK: sock } });
      await connection.close();

      expect(requests).toEqual(['publickey query', 'publickey signed']);
    } finally {
      agent.kill();
    }
  });
});
