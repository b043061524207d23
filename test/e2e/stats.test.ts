/**
 * `tula-dsr stats` end to end on the L2 namespace lab: the example stack deployed with the real terraform, real HTTP
 * traffic from the client through the 1:2:3 VIP, and the CLI run as a real child process on the synthesized stack,
 * the way a user runs it. Its JSON and its table must show the exact split the backends served, its Prometheus text
 * must pass the real promtool, and --watch must show the rates of traffic sent while it watches.
 *
 * Needs root, terraform and promtool; without them every test here fails (none is skipped).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createL2Lab, L2Lab } from '../../lab/l2/lab';
import { RunResult, Workspace } from '../../lab/l2/deploy';
import { download, httpBurst } from '../../lab/l2/traffic';
import type { ExampleOptions } from '../../lab/example-stack';
import { StatsJson, StatsJsonDocument, StatsSnapshot } from '../../model';
import { writeStatsTextfile } from '../../runtime/textfile';
import { repoRoot } from '../../lab/l2/deploy';
import { deployExample, expectOk } from '../support/lab-run';

jest.setTimeout(120_000);

const INITIAL: ExampleOptions = { backends: ['web1', 'web2', 'web3'], weights: { web1: 1, web2: 2, web3: 3 } };

let l2: L2Lab;
let ws: Workspace;
let scratch: string;

async function stats(...extra: string[]): Promise<RunResult> {
  const r = await ws.agent('stats', extra);
  expectOk(`tula-dsr stats ${extra.join(' ')}`, r);
  return r;
}

async function statsJson(): Promise<StatsJson> {
  const doc = JSON.parse((await stats('--json')).stdout) as StatsJsonDocument;
  expect(doc.balancers).toHaveLength(1);
  return doc.balancers[0] as StatsJson;
}

const webPool = (s: StatsJson) => s.pools.find((p) => p.vips.includes('web'))!;
const newFlowsByName = (s: StatsJson) => Object.fromEntries(webPool(s).backends.map((b) => [b.name, b.newFlows]));

beforeAll(async () => {
  l2 = await createL2Lab({ backends: 3 });
  scratch = mkdtempSync(join(tmpdir(), 'tula-stats-e2e-'));
  ws = await deployExample(l2, INITIAL);
}, 90_000);

afterAll(async () => {
  await l2?.teardown();
  ws?.remove();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('tula-dsr stats on the L2 lab', () => {
  test('GIVEN 600 requests through the 1:2:3 VIP WHEN `tula-dsr stats STACK_DIR --json` runs THEN it shows new flows 100/200/300, every one ended by the client, and the packets per VIP and per backend agree', async () => {
    const burst = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 600, concurrency: 4 });
    expect(burst.failures).toBe(0);
    expect(burst.counts).toEqual({ web1: 100, web2: 200, web3: 300 });

    const s = await statsJson();
    expect(s.missingCounters).toEqual([]);
    expect(newFlowsByName(s)).toEqual({ web1: 100, web2: 200, web3: 300 });
    const web = s.vips.find((v) => v.name === 'web')!;
    expect(web.newFlows).toBe(600);
    // each request ends with the client's FIN: the ended flows match, so the upper bound of active connections is 0
    expect(webPool(s).backends.map((b) => [b.name, b.endedFlows, b.active, b.activeSource])).toEqual([
      ['web1', 100, 0, 'upper-bound'],
      ['web2', 200, 0, 'upper-bound'],
      ['web3', 300, 0, 'upper-bound'],
    ]);
    // only the web VIP had traffic: every one of its packets went to some backend, and nothing else did
    expect(web.packets).toBeGreaterThanOrEqual(600 * 4);
    expect(s.backends.reduce((a, b) => a + b.packets!, 0)).toBe(web.packets);
    expect(s.backends.reduce((a, b) => a + b.bytes!, 0)).toBe(web.bytes);
    process.stdout.write(`stats after 600 requests: new flows ${JSON.stringify(newFlowsByName(s))}, web VIP ${web.packets} packets, ${web.bytes} bytes\n`);
  });

  test('GIVEN the same traffic WHEN `tula-dsr stats STACK_DIR` prints its table THEN the web pool rows show 100/200/300 new flows', async () => {
    const table = (await stats()).stdout.split('\n');
    const title = table.findIndex((l) => /^pool [0-9a-f]{8} · weighted-round-robin · l2\/tcp · VIP: web$/.test(l));
    expect(title).toBeGreaterThan(0);
    const rows = table.slice(title + 2, title + 5).map((l) => l.trim().split(/ +/));
    expect(rows.map((r) => [r[0], r[2], r[3], r[4]])).toEqual([
      ['web1', '1', '100', '100'],
      ['web2', '2', '200', '200'],
      ['web3', '3', '300', '300'],
    ]);
    expect(table.find((l) => l.startsWith('web ')))!.toMatch(/ 600 +≤0 +-$/);
    process.stdout.write(`${table.join('\n')}\n`);
  });

  test('GIVEN a 10 MiB download WHEN stats runs THEN the VIP bytes grew by the requests only: a DSR balancer never sees the reply', async () => {
    const before = (await statsJson()).vips.find((v) => v.name === 'web')!.bytes!;
    const got = await download(l2.client, l2.python, { host: l2.vips.web, port: 80, path: '/big' });
    expect(got.bytes).toBe(10 * 1024 * 1024);
    const grew = (await statsJson()).vips.find((v) => v.name === 'web')!.bytes! - before;
    expect(grew).toBeGreaterThan(0);
    expect(grew).toBeLessThan(got.bytes / 20);
    process.stdout.write(`10 MiB download: the web VIP's byte counter grew by ${grew} bytes (client→backend only)\n`);
  });

  test('GIVEN the sampled figures WHEN written as a node_exporter textfile THEN the real promtool accepts it and it carries the pool counters', async () => {
    const snapshot: StatsSnapshot = await statsJson();
    const path = join(scratch, 'tula_dsr.prom');
    writeStatsTextfile(snapshot, path);
    const check = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('close', (code) => resolve({ code, out }));
      child.stdin.end(readFileSync(path));
    });
    expect(check).toEqual({ code: 0, out: '' });
    const text = readFileSync(path, 'utf8');
    const pool = webPool(snapshot as StatsJson);
    // 100/200/300, and the download of the test before is one more new flow
    expect(pool.backends.reduce((a, b) => a + b.newFlows!, 0)).toBe(601);
    for (const b of pool.backends) {
      expect(text).toContain(
        `tula_dsr_pool_backend_connections_total{pool="${pool.id}",backend="${b.name}",remote_address="${b.address}",proto="TCP"} ${b.newFlows}`,
      );
    }
  });

  test('GIVEN `stats --watch 1 --json` as a child process WHEN 60 requests run while it watches and it gets SIGINT THEN it exits 0 and its rates add up to the 10/20/30 new flows', async () => {
    const cli = join(repoRoot(), 'dist', 'agent', 'cli.js');
    const child = spawn(process.execPath, [cli, 'stats', ws.stackDir, '--json', '--watch', '1'], { env: ws.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const docs = () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as StatsJsonDocument).balancers[0] as StatsJson);
    const waitDocs = async (n: number) => {
      for (const end = Date.now() + 20_000; docs().length < n && Date.now() < end;) await new Promise((r) => setTimeout(r, 100));
      if (docs().length < n) throw new Error(`stats --watch printed ${docs().length} documents, expected ${n}; stderr: ${err}`);
    };
    await waitDocs(1);
    const burst = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 60, concurrency: 2 });
    expect(burst.counts).toEqual({ web1: 10, web2: 20, web3: 30 });
    await waitDocs(docs().length + 2);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(err).toBe('');

    const all = docs();
    const [first, last] = [all[0], all[all.length - 1]];
    const delta = Object.fromEntries(Object.entries(newFlowsByName(last)).map(([name, n]) => [name, n! - newFlowsByName(first)[name]!]));
    expect(delta).toEqual({ web1: 10, web2: 20, web3: 30 });
    // rate × interval, summed over the samples, gives back the same counts
    const fromRates = (name: string) =>
      all.slice(1).reduce((a, s) => a + webPool(s).backends.find((b) => b.name === name)!.rates!.newFlowsPerSec! * s.intervalSec!, 0);
    expect(['web1', 'web2', 'web3'].map((n) => Math.round(fromRates(n)))).toEqual([10, 20, 30]);
    expect(all.slice(1).every((s) => s.intervalSec! > 0.5 && s.intervalSec! < 3)).toBe(true);
    const peak = Math.max(...all.map((s) => s.vips.find((v) => v.name === 'web')!.rates?.newFlowsPerSec ?? 0));
    process.stdout.write(`stats --watch: ${all.length} samples, peak ${peak.toFixed(1)} new flows/s on the web VIP\n`);
  });
});
