/**
 * `tula-dsr stats` through the real CLI against a balancer in the namespace lab (real sshd, host key pinned, real
 * nft): what the user sees before the balancer is configured, with and without the runtime's state file, the JSON
 * form, `--watch` over one connection until Ctrl-C, and the usage errors. The figures under real traffic are in
 * test/e2e/stats.test.ts; the renderers in test/model/stats*.test.ts.
 */
import { spawn } from 'node:child_process';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { RUNTIME_STATE_FILE, RuntimeState, StatsJson, StatsJsonDocument, groupPools, poolName, StrictSpecSchemas } from '../../model';
import { CLI, assertDistFresh, backendSpec, balancerSpec, expectNoStackTrace, runCli, sh, sleep, writeSpec } from './helpers';
import { renderCommand } from '../../model/shell';

jest.setTimeout(60_000);

const VIP = '10.99.4.10';
const BAD_KEY = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

let lab: Lab;
let lb: LabHost;
let be1: LabHost;
let be2: LabHost;
let lbSpec: Record<string, unknown>;
let lbFile: string;

beforeAll(async () => {
  assertDistFresh();
  lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }, { name: 'be2' }] });
  ({ lb, be1, be2 } = lab.hosts);
  lbSpec = balancerSpec(lab, lb, [
    {
      name: 'web',
      ip: VIP,
      backends: [
        { name: 'be1', ip: be1.ip, weight: 1 },
        { name: 'be2', ip: be2.ip, weight: 2 },
      ],
    },
  ]);
  lbFile = writeSpec(lab, lbSpec, 'lb.json');
});

afterAll(async () => {
  await lab?.teardown();
});

const webPool = () => poolName(groupPools(StrictSpecSchemas.BalancerSpecSchema.parse(lbSpec).vips)[0].id);
const writeRuntimeState = (state: unknown) =>
  sh(lb, `mkdir -p /var/lib/tula-dsr && printf '%s' ${renderCommand([typeof state === 'string' ? state : JSON.stringify(state)])} > ${RUNTIME_STATE_FILE}`);

describe('tula-dsr stats through the CLI', () => {
  test('GIVEN a balancer not configured yet WHEN stats runs THEN exit 1 and one line says what to do, without a stack trace', async () => {
    const r = await runCli(['stats', '--spec', lbFile]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`tula-dsr: lb (root@${lb.ip}:22): the balancer has no nft table netdev tula_dsr: apply the stack first\n`);
  });

  test('GIVEN a configured balancer without a runtime WHEN stats runs THEN the table shows the VIP, its pool and backends at zero, health unknown', async () => {
    for (const [host, file] of [
      [be1, writeSpec(lab, backendSpec(lab, be1, [{ ip: VIP }]), 'be1.json')],
      [be2, writeSpec(lab, backendSpec(lab, be2, [{ ip: VIP }]), 'be2.json')],
      [lb, lbFile],
    ] as const) {
      const applied = await runCli(['apply', '--spec', file]);
      if (applied.code !== 0) throw new Error(`apply on ${host.name} failed:\n${applied.stdout}${applied.stderr}`);
    }
    const r = await runCli(['stats', '--spec', lbFile]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^balancer lb \(eth0\) · sampled \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(balancer clock\) · counters read in \d+ ms$/);
    expect(lines[1]).toBe('runtime: no state file (no health checks run: health unknown)');
    expect(lines[2]).toBe('Packets and bytes are client→backend only: the replies of a DSR balancer bypass it.');
    expect(lines.find((l) => l.startsWith('web '))!.split(/ +/)).toEqual([
      'web',
      `${VIP}:80/tcp`,
      'l2',
      'weighted-round-robin',
      webPool(),
      '0',
      '0',
      'B',
      '0',
      '≤0',
      '-',
    ]);
    expect(lines).toContain(`pool ${webPool()} · weighted-round-robin · l2/tcp · VIP: web`);
    const pool = lines.slice(lines.indexOf(`pool ${webPool()} · weighted-round-robin · l2/tcp · VIP: web`) + 1);
    expect(pool.slice(0, 4).map((l) => l.split(/ +/))).toEqual([
      ['', 'BACKEND', 'ADDRESS', 'WEIGHT', 'NEW', 'FLOWS', 'ENDED', 'ACTIVE', 'HEALTH', 'SINCE'],
      ['', 'be1', be1.ip, '1', '0', '0', '≤0', '-', '-'],
      ['', 'be2', be2.ip, '2', '0', '0', '≤0', '-', '-'],
      [''],
    ]);
  });

  test("GIVEN the runtime's state file on the balancer WHEN stats runs THEN health, since when and fail-open come from it", async () => {
    const now = Math.floor(Date.now() / 1000);
    const state: RuntimeState = {
      version: 1,
      config: '0'.repeat(64),
      pid: 77,
      startedAt: now - 600,
      updatedAt: now,
      checks: [
        { backend: be1.ip, check: 'tcp:80', kind: 'tcp', vip: VIP, state: 'down', since: now - 30, lastError: 'connection refused' },
        { backend: be2.ip, check: 'tcp:80', kind: 'tcp', vip: VIP, state: 'up', since: now - 600 },
      ],
      pools: [{ id: webPool(), vips: ['web'], down: [be1.ip], failOpen: false, changedAt: now - 30 }],
    };
    await writeRuntimeState(state);
    const r = await runCli(['stats', '--spec', lbFile]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const lines = r.stdout.split('\n');
    expect(lines[1]).toMatch(/^runtime: pid 77, up 10m0\ds, state written \ds ago$/);
    expect(lines.find((l) => l.startsWith('  be1 '))).toMatch(/ down {4}3\ds \(connection refused\)$/);
    expect(lines.find((l) => l.startsWith('  be2 '))).toMatch(/ up {6}10m0\ds$/);
    expect(lines.find((l) => l.startsWith('web '))).toMatch(/ 1\/2 up$/);
  });

  test('GIVEN a state file this version cannot read WHEN stats runs THEN it warns once on stderr and shows health as unknown', async () => {
    await writeRuntimeState('{"version": 99}');
    const r = await runCli(['stats', '--spec', lbFile]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('tula-dsr: lb: the runtime state file is not one this version reads; health is shown as unknown\n');
    expect(r.stdout.split('\n')[1]).toBe('runtime: no state file (no health checks run: health unknown)');
    await sh(lb, `rm -f ${RUNTIME_STATE_FILE}`);
  });

  test('GIVEN --json THEN one document with the version and the balancer, every figure a number', async () => {
    const r = await runCli(['stats', '--spec', lbFile, '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as StatsJsonDocument;
    expect(doc.version).toBe(1);
    const lbStats = doc.balancers[0] as StatsJson;
    expect(lbStats).toMatchObject({ balancer: 'lb', interface: 'eth0', intervalSec: null, runtime: null, missingCounters: [] });
    expect(lbStats.pools[0].backends.map((b) => [b.name, b.newFlows, b.endedFlows, b.active, b.activeSource, b.health, b.rates])).toEqual([
      ['be1', 0, 0, 0, 'upper-bound', 'unknown', null],
      ['be2', 0, 0, 0, 'upper-bound', 'unknown', null],
    ]);
  });

  test('GIVEN --watch 0.5 --json WHEN interrupted with SIGINT (Ctrl-C) THEN it printed a document per sample over ONE SSH connection, with rates from the second on, and exits 0', async () => {
    const child = spawn('node', [CLI, 'stats', '--spec', lbFile, '--json', '--watch', '0.5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 20_000;
    const connections: number[] = [];
    while (out.split('\n').filter(Boolean).length < 4 && Date.now() < deadline) {
      // once the first sample is out, the watch holds its connection (lab commands enter the host without SSH)
      if (out.includes('\n')) connections.push(Number((await sh(lb, "ss -Htn state established '( sport = :22 )' | wc -l")).trim()));
      await sleep(200);
    }
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(err).toBe('');
    const docs = out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as StatsJsonDocument);
    expect(docs.length).toBeGreaterThanOrEqual(4);
    const samples = docs.map((d) => d.balancers[0] as StatsJson);
    expect(samples[0].intervalSec).toBeNull();
    // samples start on a fixed schedule: one the host answered late is followed by a shorter interval (CI measured
    // 0.28 s at load), so single intervals are only positive and bounded; their mean is the period
    for (const s of samples.slice(1)) {
      expect(s.intervalSec).toBeGreaterThan(0);
      expect(s.intervalSec).toBeLessThan(2);
      expect(s.vips[0].rates).toEqual({ packetsPerSec: 0, bytesPerSec: 0, newFlowsPerSec: 0 });
    }
    const meanInterval = samples.slice(1).reduce((sum, s) => sum + s.intervalSec!, 0) / (samples.length - 1);
    expect(meanInterval).toBeGreaterThan(0.35);
    expect(meanInterval).toBeLessThan(1);
    expect(connections.length).toBeGreaterThan(3);
    expect(new Set(connections)).toEqual(new Set([1]));
  });

  test('GIVEN a host key that does not match WHEN stats (even --watch) runs THEN it fails closed at once with exit 1', async () => {
    const wrong = writeSpec(lab, { ...lbSpec, ssh: { ...(lbSpec.ssh as object), hostKey: BAD_KEY } }, 'lb-badkey.json');
    const r = await runCli(['stats', '--spec', wrong, '--watch', '1']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^tula-dsr: lb \\(root@${lb.ip.replace(/\./g, '\\.')}:22\\): .*host key.*\n$`, 's'));
    expectNoStackTrace(r.stderr);
  });

  test('GIVEN a backend host spec WHEN stats runs THEN it says stats reads balancers only', async () => {
    const file = writeSpec(lab, backendSpec(lab, be1, [{ ip: VIP }]), 'be1-again.json');
    const r = await runCli(['stats', '--spec', file]);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
      code: 1,
      stdout: '',
      stderr: `tula-dsr: tula-dsr found 1 problem in the configuration:\n  - ${file}: kind: is "backend": stats reads balancers only, give a balancer's spec\n`,
    });
  });

  test.each([
    [['stats'], 'tula-dsr: stats needs STACK_DIR or --spec FILE'],
    [['stats', '--spec', 'x.json', '--watch', '0.1'], 'tula-dsr: --watch "0.1" is not allowed: use 0.5 to 3600 seconds'],
    [['stats', '--spec', 'x.json', '--diff'], "tula-dsr: Unknown option '--diff'"],
    [['stats', 'a', 'b'], 'tula-dsr: one STACK_DIR at most (got "a", "b")'],
  ])('GIVEN `tula-dsr %j` THEN a usage error (exit 64): %s', async (args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(64);
    expect(r.stderr.split('\n')[0]).toBe(message);
  });
});
