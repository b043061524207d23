/**
 * Every remote run has a deadline and an output cap (real sshd, keepalives on): a script that never ends, or one
 * that streams without end, fails with a clear error and its channel closed, instead of holding the provisioner (and
 * the shared agent daemon) for ever while its output fills memory.
 */
import { connect, SshConnection, RunResult } from '../../agent/ssh/connection';
import { SshError } from '../../agent/ssh/errors';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { assertDistFresh, backendSpec, expectNoStackTrace, runCli, withWrappedTool, writeSpec } from './helpers';

jest.setTimeout(30_000);

let lab: Lab;
let be1: LabHost;
let connection: SshConnection;

beforeAll(async () => {
  assertDistFresh();
  lab = await createLab({ hosts: [{ name: 'be1' }] });
  ({ be1 } = lab.hosts);
  connection = await connect(be1.target(), { keepaliveIntervalMs: 200 });
});

afterAll(async () => {
  await connection?.close();
  await lab?.teardown();
});

/** How a run settles, and after how long; a run still pending after `patienceMs` counts as hanging. */
async function settle(start: () => Promise<RunResult>, patienceMs = 8000): Promise<{ ms: number; error?: SshError; hung?: true }> {
  const started = Date.now();
  const run = start();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), patienceMs)));
  try {
    const result = await Promise.race([run.then(() => 'resolved' as const), hung]);
    return result === 'hung' ? { ms: Date.now() - started, hung: true } : { ms: Date.now() - started };
  } catch (error) {
    return { ms: Date.now() - started, error: error as SshError };
  } finally {
    clearTimeout(timer);
  }
}

const target = () => `root@${be1.ip}:22`;

describe('the deadline of a remote run', () => {
  test.each([
    ['sleeps silently', 'sleep 4'],
    ['keeps printing a line every 200 ms', 'i=0; while [ $i -lt 20 ]; do echo still here; sleep 0.2; i=$((i+1)); done'],
  ])('GIVEN a script that %s WHEN run with a 1 s deadline THEN it fails after 1 s with run-timeout', async (_what, script) => {
    const r = await settle(() => connection.run(script, { timeoutMs: 1000 }));

    expect(r.hung).toBeUndefined();
    expect(r.error?.info).toMatchObject({
      kind: 'run-timeout',
      message: `${target()}: the remote script did not end within 1 s, so tula-dsr closed its channel (set a longer deadline with --run-timeout or TULA_DSR_RUN_TIMEOUT, in seconds)`,
    });
    expect(r.ms).toBeGreaterThanOrEqual(1000);
    expect(r.ms).toBeLessThan(2500);
  });

  test('GIVEN a run given up at its deadline WHEN the connection runs the next script THEN that one works', async () => {
    await settle(() => connection.run('sleep 3', { timeoutMs: 500 }));
    await expect(connection.run('echo fine')).resolves.toMatchObject({ stdout: 'fine\n', code: 0 });
  });
});

describe('the output cap of a remote run', () => {
  test('GIVEN a script that streams without end WHEN run with an 8 MiB cap THEN it fails with output-limit at once, holding at most about the cap', async () => {
    const buffersBefore = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers - buffersBefore)), 20);
    const r = await settle(() => connection.run('exec cat /dev/zero', { maxOutputBytes: 8 * 1048576 }));
    clearInterval(sampler);

    expect(r.hung).toBeUndefined();
    expect(r.error?.info).toMatchObject({
      kind: 'output-limit',
      message: `${target()}: the remote script wrote more than 8 MiB, so tula-dsr closed its channel; tula-dsr's own scripts write far less: check what the login runs on that host (a profile that prints without end?)`,
    });
    expect(r.ms).toBeLessThan(3000);
    expect(peak).toBeLessThan(48 * 1048576);
    console.log(`output cap 8 MiB: failed after ${r.ms} ms; peak Buffer memory above the start ${(peak / 1048576).toFixed(1)} MiB`);
  });
});

describe('what the user sees', () => {
  test('GIVEN a host whose facts script hangs WHEN the CLI applies with TULA_DSR_RUN_TIMEOUT=1 (as a provisioner would) THEN it fails after about 1 s, exit 1, no stack trace', async () => {
    const r = await withWrappedTool(be1, '/usr/sbin/ip', 'sleep 3', async () => {
      const result = await runCli(['apply', '--spec', writeSpec(lab, backendSpec(lab, be1, [{ ip: '10.99.9.10' }]))], { TULA_DSR_RUN_TIMEOUT: '1' });
      await new Promise((resolve) => setTimeout(resolve, 3000)); // the wrapper ends before it is unmounted
      return result;
    });

    expect(r.code).toBe(1);
    expectNoStackTrace(r.stdout + r.stderr);
    expect(r.stdout.split('\n')[0]).toBe(
      `failed: be1 ${target()}: the remote script did not end within 1 s, so tula-dsr closed its channel (set a longer deadline with --run-timeout or TULA_DSR_RUN_TIMEOUT, in seconds)`,
    );
    expect(r.ms).toBeLessThan(3500);
  });

  test.each(['0', 'soon', 'NaN'])('GIVEN --run-timeout %j WHEN the CLI starts THEN it is a usage error', async (value) => {
    const r = await runCli(['apply', '--spec', '/nonexistent.json', '--run-timeout', value]);
    expect(r.code).toBe(64);
    expect(r.stderr.split('\n')[0]).toBe('tula-dsr: --run-timeout needs a positive number of seconds');
  });
});
