/**
 * The agent daemon serves every provisioner of a `terraform apply` at once, so one request must not be able to end
 * or exhaust the others: a fault in one run (an exception or rejection nothing caught) ends that run only, an
 * oversized request is refused, and a spec that decompresses to gigabytes is refused before it is expanded.
 * Real daemon processes on a Unix socket; the runs that fault come from test/support/faulty-daemon.ts.
 */
import { spawn, ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import * as os from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execFile } from '../../lab/exec';
import { stopAgentDaemons } from '../../lab/agent-daemons';
import { SPEC_ENV_CHUNK } from '../../model';
import { REPO, assertDistFresh, sleep } from './helpers';

jest.setTimeout(60_000);

let dir: string;
beforeAll(() => {
  assertDistFresh();
  dir = mkdtempSync(join(os.tmpdir(), 'tula-daemon-faults-'));
});
afterAll(async () => {
  for (const runtime of readdirSync(dir).filter((n) => n.startsWith('real-'))) await stopAgentDaemons(join(dir, runtime));
  rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  readonly out: string;
  readonly err: string;
  readonly exit?: number;
}

/** Sends one request line (or raw text) to the daemon at `socket` and collects its frames until it hangs up. */
function ask(socket: string, request: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const c = connect(socket);
    let text = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => (text += d));
    c.on('error', reject);
    c.on('close', () => {
      const frames = text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { out?: string; err?: string; exit?: number });
      resolve({
        out: frames.map((f) => f.out ?? '').join(''),
        err: frames.map((f) => f.err ?? '').join(''),
        exit: frames.find((f) => f.exit !== undefined)?.exit,
      });
    });
    c.write(request);
  });
}

const requestLine = (...argv: string[]) => `${JSON.stringify({ v: 1, argv, cwd: '/', env: {} })}\n`;

describe('a fault in one request', () => {
  let daemon: ChildProcess;
  let socket: string;
  let log: string;

  beforeAll(async () => {
    const runtime = join(dir, 'faulty');
    mkdirSync(runtime, { mode: 0o700 });
    socket = join(runtime, 'agent.sock');
    log = join(runtime, 'daemon.log');
    daemon = spawn(process.execPath, [join(REPO, 'dist/test/support/faulty-daemon.js'), socket], { stdio: 'ignore' });
    for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(25);
  });
  afterAll(() => {
    daemon.kill('SIGTERM');
  });

  test('GIVEN four runs at once, three of which fault WHEN they end THEN each faulty one gets an internal error and exit 1, and the healthy one its result', async () => {
    const [healthy, thrown, rejected, failed] = await Promise.all([
      ask(socket, requestLine('slow', '800')),
      ask(socket, requestLine('throw-later')),
      ask(socket, requestLine('reject-later')),
      ask(socket, requestLine('throw')),
    ]);

    expect(healthy).toEqual({ out: 'slow done\n', err: '', exit: 0 });
    const internal = (message: string) => ({ out: '', err: `tula-dsr: internal error in the agent daemon: ${message} (see ${log})\n`, exit: 1 });
    expect(thrown).toEqual(internal('thrown from a timer'));
    expect(rejected).toEqual(internal('rejected with no handler'));
    expect(failed).toEqual(internal('the run rejected'));
    expect(readFileSync(log, 'utf8').match(/internal error: Error: /g)).toHaveLength(3);
  });

  test('GIVEN those faults WHEN a new run comes THEN the same daemon serves it', async () => {
    expect(await ask(socket, requestLine('slow', '10'))).toEqual({ out: 'slow done\n', err: '', exit: 0 });
    expect(daemon.exitCode).toBeNull();
  });

  test('GIVEN a request line longer than 64 MiB WHEN it arrives THEN the daemon refuses it without waiting for its end, and keeps serving', async () => {
    const reply = await ask(socket, `{"v": 1, "argv": ["${'x'.repeat(65 * 1048576)}`);
    expect(reply).toEqual({ out: '', err: 'tula-dsr: agent daemon: the request is longer than 64 MiB\n', exit: 64 });
    expect(await ask(socket, requestLine('slow', '10'))).toEqual({ out: 'slow done\n', err: '', exit: 0 });
  });
});

describe('a spec that decompresses to more than the agent reads', () => {
  const bomb = gzipSync(Buffer.alloc(300 * 1048576, ' '), { level: 9 }).toString('base64');
  test.each([
    ['300 KB of gzip that expands to 300 MiB', bomb],
    // a large host's spec is stored compressed, and the provisioner compresses that text again
    ['a stored compressed spec that expands to 300 MiB, compressed again as the provisioner does', gzipSync(bomb).toString('base64')],
  ])('GIVEN %s WHEN a provisioner runs it through the real daemon THEN it is refused at once, exit 1, and the daemon stays small', async (_, packed) => {
    const env: Record<string, string> = { TULA_DSR_RUNTIME_DIR: mkdtempSync(join(dir, 'real-')) };
    for (let i = 0; i * SPEC_ENV_CHUNK < packed.length; i++) env[`TULA_DSR_SPEC_GZ_${i}`] = packed.slice(i * SPEC_ENV_CHUNK, (i + 1) * SPEC_ENV_CHUNK);

    const r = await execFile(['node', '-e', 'require("tula-dsr/agent").main(["apply"])'], { env, cwd: REPO, timeoutMs: 30_000 });

    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'tula-dsr: tula-dsr found 1 problem in the configuration:\n' +
        '  - (spec): TULA_DSR_SPEC_GZ_*: is larger than 64 MiB once decompressed, more than any balancer needs; it was not read\n',
    );
    const pidFile = join(
      env.TULA_DSR_RUNTIME_DIR,
      readdirSync(env.TULA_DSR_RUNTIME_DIR).find((n) => n.endsWith('.sock.pid'))!,
    );
    const rssKb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${readFileSync(pidFile, 'utf8').trim()}/status`, 'utf8'))![1]);
    console.log(`gzip bomb (${(packed.length / 1024).toFixed(0)} KB base64 -> 300 MiB): refused; daemon peak RSS ${(rssKb / 1024).toFixed(0)} MiB`);
    expect(rssKb).toBeLessThan(200 * 1024);
  });
});
