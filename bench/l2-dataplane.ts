/**
 * The data plane through a real L2 DSR balancer, on the L2 namespace lab (lab/l2): client,
 * lb and web1..3, each backend running an HTTP server bound to 0.0.0.0 (see FAST_SERVER_JS).
 *
 *  - Per-packet cost against the number of VIPs: HTTP requests per second with wrk from the client through the
 *    balancer to one VIP, with the balancer configured for that VIP alone, and for 10,000 VIPs × the lab's
 *    backends where the tested VIP is the last one added (the last in the spec, the highest address and the last
 *    name in the table's order). The two configurations alternate in ABBA order (one, many, many, one, …), each
 *    switch applied by the tula-dsr agent (an in-place reload of the table), and the flow map is flushed before
 *    every run. Each backend carries every VIP on lo, as its BackendHost spec says (`--tested-only`: only the
 *    tested one).
 *  - The balancer's share of the bytes of a 10 MiB response (lab/l2/traffic.ts measureByteShare).
 *
 *   node dist/bench/l2-dataplane.js [--vips N] [--runs N] [--seconds S] [--connections C] [--tested-only]
 *
 * Deployment uses the agent CLI with `--spec` files, as an operator would: backends first, then the balancer.
 * VIPs are taken from 10.214.0.0/18, outside every lab subnet, so that no other namespace (the root namespace
 * included) owns any of them; the client gets an on-link route to that range, so it ARPs for a VIP and the
 * balancer, which owns every VIP on its eth0, answers. Traffic never leaves the lab's namespaces, and every wrk
 * run is bounded (a few seconds, under `timeout`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { formatIpv4, parseVipStatsSets, vipCounterName } from '../model';
import { createL2Lab, L2Lab } from '../lab/l2/lab';
import { flushFlows, httpBurst, measureByteShare } from '../lab/l2/traffic';
import { waitFor } from '../lab/exec';
import type { Lab, LabHost } from '../lab/topology';
import { Stat, stat } from './stats';
import { PERL_LOADER } from '../constructs/host-resource';

const REPO = resolve(__dirname, '..', '..');
/** The `tula-dsr` bin: the agent CLI bundled into one file (scripts/bundle-agent.mjs). */
const CLI = join(REPO, 'dist', 'agent', 'tula-dsr.js');
/** 10.214.0.0: the first VIP is .0.1; 10,000 VIPs end at 10.214.39.16. */
const VIP_BASE = 0x0ad60000;
const VIP_RANGE = '10.214.0.0/18';
/**
 * The measured HTTP server: Node's http module (HTTP/1.1, keep-alive), bound to 0.0.0.0:81 on each backend and
 * answering its name (GET /big: 10 MiB, for the byte share), started for the benchmark next to the lab's own
 * servers. The lab's Python server (HTTP/1.0, one connection per request) tops out at about 4,000 requests per
 * second here, where the balancer's work is too small a share of the total for a change in it to show; Node
 * serves about 50,000 on kept-alive connections. wrk measures both keep-alive connections (per-packet cost of
 * established flows) and a new connection per request (`Connection: close`: the SYN path through the scheduler).
 */
const PORT = 81;
export const FAST_SERVER_JS = String.raw`
const name = process.argv[1];
const body = Buffer.from(name + '\n');
const big = Buffer.alloc(10 * 1024 * 1024, name + ' ');
require('http').createServer((req, res) => {
  const b = req.url === '/big' ? big : body;
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': b.length, 'X-Backend': name });
  res.end(b);
}).listen({ host: '0.0.0.0', port: Number(process.argv[2]), backlog: 1024 }, () => console.log('READY'));
`;

export type BackendVips = 'all' | 'tested';

export interface L2DataPlaneOptions {
  readonly vips?: number;
  readonly runs?: number;
  /** wrk run length per measurement. */
  readonly seconds?: number;
  readonly connections?: number;
  /** 'all': every backend carries all VIPs on lo (what the BackendHost specs say); 'tested': only the tested VIP. */
  readonly backendVips?: BackendVips;
  readonly byteShareRuns?: number;
  readonly log?: (line: string) => void;
}

export interface WrkResult {
  readonly rps: number;
  readonly requests: number;
  readonly errors: number;
  readonly non2xx: number;
}

export interface ApplyTiming {
  readonly what: string;
  readonly ms: number;
  readonly changed: number;
}

/** wrk modes: keep-alive connections, or a new connection per request (`Connection: close`). */
export type WrkMode = 'keepalive' | 'close';
export const WRK_MODES: Record<WrkMode, string> = {
  keepalive: 'keep-alive connections (established flows)',
  close: 'a new connection per request (SYN path through the scheduler)',
};

export interface RpsComparison {
  readonly one: Stat;
  readonly many: Stat;
  /** median rps with many VIPs / median rps with 1 VIP */
  readonly ratio: number;
}

export interface L2DataPlaneResult {
  readonly vips: number;
  readonly backends: number;
  readonly backendVips: BackendVips;
  readonly wrk: string;
  readonly rps: Record<WrkMode, RpsComparison>;
  readonly runs: { config: 'one' | 'many'; mode: WrkMode; rps: number; requests: number; errors: number }[];
  readonly applies: ApplyTiming[];
  readonly byteShare: Stat;
  readonly byteShareBytes: { client: number; balancer: number };
}

/** wrk from Debian; installed with apt-get when missing (the bench runs as root). */
export function ensureWrk(log: (line: string) => void = () => undefined): string {
  const found = () => spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' }).stdout.trim();
  if (found()) return found();
  log('installing wrk (apt-get install wrk)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = spawnSync('apt-get', ['install', '-y', '-q', 'wrk'], { env, encoding: 'utf8' });
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-q'], { env, stdio: 'ignore' });
    r = spawnSync('apt-get', ['install', '-y', '-q', 'wrk'], { env, encoding: 'utf8' });
  }
  if (r.status !== 0 || !found()) throw new Error(`cannot install wrk: ${r.stderr}`);
  return found();
}

export function vipAddress(index: number): string {
  return formatIpv4(VIP_BASE + 1 + index);
}

export const vipName = (index: number) => `v${String(index).padStart(5, '0')}`;

/** The SSH target of a lab host, as a spec carries it. */
export function benchSsh(lab: Lab, h: LabHost) {
  return { host: h.ip, port: 22, user: 'root', privateKeyPath: lab.clientKeyPath, hostKey: h.hostKeyFingerprint };
}

/** The bench's VIP number `i` (a weighted-round-robin L2 TCP VIP) on these backends. */
export function benchVip(i: number, backends: readonly unknown[], port = PORT) {
  return {
    path: `bench/vip/${vipName(i)}`,
    name: vipName(i),
    ip: vipAddress(i),
    port,
    protocol: 'tcp',
    mode: 'l2',
    algorithm: 'weighted-round-robin',
    flowTimeoutSec: 300,
    backends,
  };
}

/** The balancer spec: VIPs 0..count-1, or only the tested one (index total-1) when count is 1. */
export function balancerSpec(l2: L2Lab, indexes: readonly number[]): string {
  const backends = l2.backends.map((b) => ({ path: `bench/be/${b.name}`, name: b.name, ip: b.ip, weight: 1 }));
  const vips = indexes.map((i) => benchVip(i, backends));
  return JSON.stringify({
    kind: 'balancer',
    path: 'bench/lb',
    name: 'lb',
    ssh: benchSsh(l2.lab, l2.lb),
    interface: 'eth0',
    address: l2.lb.ip,
    subnet: l2.lab.subnet,
    vips,
  });
}

export function backendSpec(l2: L2Lab, h: LabHost, indexes: readonly number[]): string {
  const services = indexes.map((i) => ({ path: `bench/vip/${vipName(i)}/${h.name}`, ip: vipAddress(i), port: PORT, protocol: 'tcp', mode: 'l2' }));
  return JSON.stringify({ kind: 'backend', path: `bench/be/${h.name}`, name: h.name, ssh: benchSsh(l2.lab, h), address: h.ip, services });
}

/**
 * How a run reaches the agent: the CLI (`tula-dsr`, the whole agent in its process), or a small client that hands
 * the run to the per-user agent daemon (warm: modules loaded and compiled): node's (`daemon`), or the perl client
 * that Terraform's provisioners run where perl is at hand (`perl`, through the provisioner's perl loader).
 */
export type AgentPath = 'cli' | 'daemon' | 'perl';

/** What Terraform's provisioner runs where perl is not at hand (see constructs/host-resource.ts), with `args` as its argv. */
const DAEMON_CLIENT = `require(${JSON.stringify(join(REPO, 'dist', 'agent', 'entry.js'))}).main(process.argv.slice(1))`;

/** The agent CLI (or a client of the daemon) as a child process, killed after 300 s; its output and wall time. */
export function runCli(args: string[], path: AgentPath = 'cli'): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = process.hrtime.bigint();
  return new Promise((done, fail) => {
    // TULA_BENCH_NODE_ARGS: extra node flags for the CLI runs (`--cpu-prof --cpu-prof-dir=DIR` profiles each run)
    const nodeArgs = (process.env.TULA_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const [command, argv] =
      path === 'perl'
        ? ['perl', ['-e', PERL_LOADER, REPO, ...args]]
        : [process.execPath, [...nodeArgs, ...(path === 'cli' ? [CLI] : ['-e', DAEMON_CLIENT]), ...args]];
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code: code ?? 1, stdout, stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    });
  });
}

/** `tula-dsr apply --spec FILE --json` for each spec in parallel; returns the wall time and the changed count. */
export async function apply(dir: string, what: string, specs: Record<string, string>): Promise<ApplyTiming> {
  const t0 = process.hrtime.bigint();
  const results = await Promise.all(
    Object.entries(specs).map(async ([name, text]) => {
      const file = join(dir, `${name}.json`);
      writeFileSync(file, text);
      const r = await runCli(['apply', '--spec', file, '--json', '--timeout', '30']);
      if (r.code !== 0) throw new Error(`tula-dsr apply ${name} (${what}) failed (exit ${r.code}):\n${r.stderr.slice(-2000)}\n${r.stdout.slice(-2000)}`);
      const json = JSON.parse(r.stdout) as { results: { counts: { changed: number } }[] };
      return json.results.reduce((s, x) => s + x.counts.changed, 0);
    }),
  );
  return { what, ms: Number(process.hrtime.bigint() - t0) / 1e6, changed: results.reduce((a, b) => a + b, 0) };
}

/** Parses wrk's report: Requests/sec, total requests, socket errors and non-2xx responses. */
export function parseWrk(out: string): WrkResult {
  const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  // read errors: wrk counts a peer's close after an HTTP/1.0 response as a read error only when no bytes came
  const errors = sock ? Number(sock[1]) + Number(sock[3]) + Number(sock[4]) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  if (!Number.isFinite(rps) || !Number.isFinite(requests)) throw new Error(`cannot parse wrk output:\n${out}`);
  return { rps, requests, errors, non2xx };
}

export async function runWrk(client: LabHost, vip: string, mode: WrkMode, seconds: number, connections: number): Promise<WrkResult> {
  const header = mode === 'close' ? ['-H', 'Connection: close'] : [];
  const argv = [
    'timeout',
    String(seconds + 20),
    'wrk',
    '-t',
    '2',
    '-c',
    String(connections),
    '-d',
    `${seconds}s`,
    '--timeout',
    '5s',
    ...header,
    `http://${vip}:${PORT}/`,
  ];
  const r = await client.exec(argv);
  if (r.code !== 0) throw new Error(`wrk failed (exit ${r.code}): ${r.stderr}\n${r.stdout}`);
  return parseWrk(r.stdout);
}

/** What the VIP's element of the statistics set has counted, read as `tula-dsr stats` reads it. */
async function vipPackets(lb: LabHost, ip: string): Promise<number> {
  const r = await lb.exec(['nft', 'list', 'set', 'netdev', 'tula_dsr', 'vip_stats_port']);
  const counted = parseVipStatsSets([r.stdout]).get(vipCounterName({ ip, protocol: 'tcp', port: PORT }));
  if (!counted) throw new Error(`vip_stats_port has no element for ${ip}:${PORT}: ${r.stderr || r.stdout.slice(0, 500)}`);
  return counted.packets;
}

export async function measureL2DataPlane(o: L2DataPlaneOptions = {}): Promise<L2DataPlaneResult> {
  const total = o.vips ?? 10000;
  const runs = o.runs ?? 3;
  const seconds = o.seconds ?? 5;
  const connections = o.connections ?? 16;
  const backendVips = o.backendVips ?? 'all';
  const log = o.log ?? (() => undefined);
  ensureWrk(log);
  const wrkVersion = spawnSync('sh', ['-c', 'wrk -v 2>&1 | head -1'], { encoding: 'utf8' }).stdout.trim().split(' ').slice(0, 2).join(' ');
  const dir = mkdtempSync(join(tmpdir(), 'tula-l2-bench-'));
  const l2 = await createL2Lab({ backends: 3 });
  try {
    const { client, lb } = l2;
    await Promise.all(
      l2.backends.map(async (b) => {
        const p = b.spawn([process.execPath, '-e', FAST_SERVER_JS, b.name, String(PORT)]);
        const ready = await waitFor(() => p.stdoutText().includes('READY') || !p.isRunning(), 10_000, 20);
        if (!ready || !p.isRunning()) throw new Error(`${b.name}: the Node HTTP server did not start: ${p.stderrText()}`);
      }),
    );
    // Load-generator tuning on the client only (a lab host that tula-dsr does not manage), as usual for wrk: with
    // `Connection: close` wrk often closes first, so the client keeps thousands of ports in TIME_WAIT; once about
    // half of the default 28,000 ephemeral ports are, connect() slows to a crawl (800 requests/s instead of 10,000
    // on this machine). Reusing TIME_WAIT ports (timestamps keep that safe) and a wider range avoid it; the range
    // stays above 32767, clear of the source ports lab/l2's httpBurst binds (20000-31999).
    const tuned = await client.exec(['sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=32768 65535']);
    if (tuned.code !== 0) throw new Error(`client sysctls: ${tuned.stderr}`);
    const tested = total - 1;
    const all = Array.from({ length: total }, (_, i) => i);
    const testedVip = vipAddress(tested);
    // the client is not a managed host: an on-link route, so that it ARPs for the VIPs on the segment
    const route = await client.exec(['ip', 'route', 'add', VIP_RANGE, 'dev', 'eth0']);
    if (route.code !== 0) throw new Error(`client route: ${route.stderr}`);

    const applies: ApplyTiming[] = [];
    const backendIndexes = backendVips === 'all' ? all : [tested];
    const bt = await apply(
      dir,
      `backends: ${backendIndexes.length === 1 ? '1 VIP' : `${backendIndexes.length} VIPs`} on lo, ${l2.backends.length} hosts in parallel`,
      Object.fromEntries(l2.backends.map((b) => [b.name, backendSpec(l2, b, backendIndexes)])),
    );
    applies.push(bt);
    log(`l2: ${bt.what}: ${(bt.ms / 1000).toFixed(1)} s`);

    const configs = { one: balancerSpec(l2, [tested]), many: balancerSpec(l2, all) };
    const rps: Record<WrkMode, Record<'one' | 'many', number[]>> = { keepalive: { one: [], many: [] }, close: { one: [], many: [] } };
    const perRun: L2DataPlaneResult['runs'] = [];
    // ABBA (one many many one one many …): linear drift of the machine's load cancels, and each switch between
    // the configurations is one reload of the balancer by the agent
    const order: ('one' | 'many')[] = [];
    for (let r = 0; r < runs; r++) order.push(...(r % 2 === 0 ? (['one', 'many'] as const) : (['many', 'one'] as const)));
    let loaded: 'one' | 'many' | undefined;
    for (const config of order) {
      const n = config === 'one' ? 1 : total;
      if (loaded !== config) {
        const t = await apply(
          dir,
          `balancer: reload from ${loaded === undefined ? 'nothing' : loaded === 'one' ? '1 VIP' : `${total} VIPs`} to ${n === 1 ? '1 VIP' : `${n} VIPs`}`,
          { lb: configs[config] },
        );
        applies.push(t);
        loaded = config;
        log(`l2: ${t.what}: ${(t.ms / 1000).toFixed(1)} s (${t.changed} changed)`);
        await flushFlows(lb);
        // a short burst checks the path end to end (every answer from a backend, none from the balancer)
        const check = await httpBurst(client, l2.python, { host: testedVip, port: PORT, count: 30 });
        if (check.failures > 0 || Object.keys(check.counts).some((k) => !k.startsWith('web')))
          throw new Error(`requests through ${testedVip} failed: ${JSON.stringify(check)}`);
      }
      if (perRun.length === 0) {
        // warm-up, not recorded: the servers' JIT, the client's and the backends' socket caches
        for (const mode of ['keepalive', 'close'] as const) await runWrk(client, testedVip, mode, 2, connections);
      }
      for (const mode of ['keepalive', 'close'] as const) {
        await flushFlows(lb);
        const before = await vipPackets(lb, vipAddress(tested));
        const w = await runWrk(client, testedVip, mode, seconds, connections);
        const after = await vipPackets(lb, vipAddress(tested));
        if (w.errors > w.requests * 0.01 || w.non2xx > 0)
          throw new Error(`wrk (${mode}) to ${testedVip} (${n} VIPs): ${w.errors} socket errors, ${w.non2xx} non-2xx of ${w.requests}`);
        // every request's client packets cross the balancer: at least 1 per request on a kept-alive connection
        if (!(after - before >= w.requests)) throw new Error(`the balancer counted ${after - before} packets for ${w.requests} requests: traffic bypassed it`);
        rps[mode][config].push(w.rps);
        perRun.push({ config, mode, rps: w.rps, requests: w.requests, errors: w.errors });
        log(`l2: wrk ${mode} ${n} VIP(s): ${w.rps.toFixed(0)} requests/s (${w.requests} requests, ${w.errors} errors, balancer saw ${after - before} packets)`);
      }
    }

    // byte share, on whatever configuration is loaded last
    const shares: number[] = [];
    let bytes = { client: 0, balancer: 0 };
    for (let i = 0; i < (o.byteShareRuns ?? 3); i++) {
      await flushFlows(lb);
      const s = await measureByteShare(client, lb, l2.python, { host: testedVip, port: PORT });
      if (s.download.error || s.download.bytes !== s.download.expected || s.download.expected !== 10 * 1024 * 1024)
        throw new Error(`10 MiB download through ${testedVip} failed: ${JSON.stringify(s.download)}`);
      shares.push(s.share);
      bytes = { client: s.clientBytes, balancer: s.balancerBytes };
      log(`l2: byte share: balancer ${s.balancerBytes} of ${s.clientBytes} bytes (${(s.share * 100).toFixed(2)}%)`);
    }
    const compare = (m: WrkMode): RpsComparison => {
      const one = stat(rps[m].one);
      const many = stat(rps[m].many);
      return { one, many, ratio: many.median / one.median };
    };
    return {
      vips: total,
      backends: l2.backends.length,
      backendVips,
      wrk: `${wrkVersion}, 2 threads, ${connections} connections, ${seconds} s per run`,
      rps: { keepalive: compare('keepalive'), close: compare('close') },
      runs: perRun,
      applies,
      byteShare: stat(shares),
      byteShareBytes: bytes,
    };
  } finally {
    await l2.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const arg = (name: string, fallback: number) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : fallback;
  };
  measureL2DataPlane({
    vips: arg('vips', 10000),
    runs: arg('runs', 3),
    seconds: arg('seconds', 5),
    connections: arg('connections', 16),
    backendVips: process.argv.includes('--tested-only') ? 'tested' : 'all',
    log: (l) => process.stderr.write(`${l}\n`),
  }).then(
    (r) => process.stdout.write(JSON.stringify(r, null, 2) + '\n'),
    (e) => {
      process.stderr.write(`l2-dataplane: ${(e as Error).stack}\n`);
      process.exitCode = 1;
    },
  );
}
