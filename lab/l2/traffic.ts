/**
 * Traffic from the lab's client, and the measurements the demo and the end-to-end tests make on the balancer.
 * Every generator is bounded in count and time; traffic goes only to the lab's own addresses.
 */
import { createHash } from 'node:crypto';
import type { LabHost } from '../topology';
import type { BackgroundProcess } from '../exec';
import { waitFor } from '../exec';
import { CLIENT_PY } from './scripts';

export interface BurstResult {
  /** Responses per backend name. */
  readonly counts: Record<string, number>;
  readonly failures: number;
  readonly errors: string[];
}

export interface DownloadResult {
  readonly backend: string | null;
  readonly status: number;
  readonly bytes: number;
  readonly expected: number;
  readonly ms: number;
  /** The body's sha256 (hex), as received. */
  readonly sha256?: string;
  readonly error?: string;
}

async function runClient<T>(client: LabHost, python: string, mode: string, config: object, timeoutMs: number): Promise<T> {
  const r = await client.exec(['timeout', String(Math.ceil(timeoutMs / 1000)), python, '-c', CLIENT_PY, mode, JSON.stringify(config)]);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !line.startsWith('{')) {
    throw new Error(`client ${mode} to ${JSON.stringify(config)} failed (exit ${r.code}):\n${r.stderr.trim()}\n${r.stdout.trim()}`);
  }
  return JSON.parse(line) as T;
}

/**
 * `count` HTTP GETs to host:port, each on a new connection (bounded: 5 s per request, 25 s in all), from source
 * ports at a random base in 20000-31999 (below the kernel's ephemeral range, so that the kernel's own port choice
 * plays no part). Each request uses its own port, unless `sourcePorts` is set: then every request reuses one of that
 * many ports, in turn, as clients behind a NAT gateway do (at most `sourcePorts` requests run at once). `pauseMs`:
 * each worker's pause after each request, to pace the client.
 */
export function httpBurst(
  client: LabHost,
  python: string,
  o: { host: string; port: number; count: number; concurrency?: number; path?: string; sourcePorts?: number; pauseMs?: number },
): Promise<BurstResult> {
  if (o.count > 2000) throw new Error(`httpBurst: count ${o.count} is too large: at most 2000`);
  const concurrency = Math.min(o.concurrency ?? 4, o.sourcePorts ?? Infinity);
  const sourcePortBase = 20000 + Math.floor(Math.random() * (12000 - (o.sourcePorts ?? o.count)));
  return runClient(client, python, 'burst', { ...o, concurrency, sourcePortBase }, 25_000);
}

export interface RateResult extends BurstResult {
  /** How late the worst request started, in ms (the client could not keep up when large). */
  readonly lateMs: number;
}

/** Open-loop HTTP load: a GET on a new connection every 1/rate s for `seconds` (at most 200/s, 120 s). */
export function httpRate(client: LabHost, python: string, o: { host: string; port: number; path: string; rate: number; seconds: number }): Promise<RateResult> {
  if (o.rate > 200 || o.seconds > 120) throw new Error(`httpRate: ${o.rate}/s for ${o.seconds} s is too much: at most 200/s for 120 s`);
  // longer than a host's exec allows: a background process, bounded by `timeout`
  const p = client.spawn(['timeout', String(o.seconds + 20), python, '-c', CLIENT_PY, 'rate', JSON.stringify({ ...o, timeout: 10 })]);
  return p.exited.then(({ code }) => {
    const line = p.stdoutText().trim().split('\n').pop() ?? '';
    if (code !== 0 || !line.startsWith('{')) throw new Error(`client rate to ${JSON.stringify(o)} failed (exit ${code}):\n${p.stderrText().trim()}\n${line}`);
    return JSON.parse(line) as RateResult;
  });
}

/** `count` UDP datagrams to host:port, each from a new socket on a port of its own (as httpBurst's, below the ephemeral range). */
export function udpBurst(client: LabHost, python: string, o: { host: string; port: number; count: number }): Promise<BurstResult> {
  if (o.count > 2000) throw new Error(`udpBurst: count ${o.count} is too large: at most 2000`);
  const sourcePortBase = 20000 + Math.floor(Math.random() * (12000 - o.count));
  return runClient(client, python, 'udp', { timeout: 2, ...o, sourcePortBase }, 25_000);
}

/** One GET whose body is read to the end (a 10 MiB /big or a throttled /slow). */
export function download(client: LabHost, python: string, o: { host: string; port: number; path: string }): Promise<DownloadResult> {
  return runClient(client, python, 'get', { host: o.host, port: o.port, path: o.path, timeout: 10 }, 25_000);
}

/**
 * The same single GET as {@link download}, running in the background (a long flow during updates). Bounded by
 * the socket timeout: the download fails if no byte arrives for `timeoutSec`.
 */
export interface BackgroundDownload {
  readonly process: BackgroundProcess;
  /** Resolves when the download ends (or fails). */
  readonly result: Promise<DownloadResult>;
  /** Resolves with the connection's source port once it is up, or null if the download ended without connecting. */
  readonly connected: Promise<number | null>;
}

/** The sha256 of the 10 MiB body backend `name` serves on /big and /slow (BACKEND_SERVER_PY's DATA, 160 times). */
export function bigBodySha256(name: string): string {
  const chunk = 64 * 1024;
  const unit = `${name} `;
  const data = Buffer.from(unit.repeat(Math.floor(chunk / unit.length)) + '.'.repeat(chunk % unit.length));
  const hash = createHash('sha256');
  for (let i = 0; i < (10 * 1024 * 1024) / chunk; i++) hash.update(data);
  return hash.digest('hex');
}

export function startDownload(client: LabHost, python: string, o: { host: string; port: number; path: string; timeoutSec: number }): BackgroundDownload {
  const process = client.spawn([python, '-u', '-c', CLIENT_PY, 'get', JSON.stringify({ host: o.host, port: o.port, path: o.path, timeout: o.timeoutSec })]);
  // 'exit' can come before the last of stdout: the result line is read once the pipes are closed too
  const closed = new Promise<void>((resolve) => process.child.once('close', () => resolve()));
  const result = Promise.all([process.exited, closed]).then(() => {
    const line =
      process
        .stdoutText()
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('{"connected"'))
        .pop() ?? '';
    if (!line.startsWith('{')) return { backend: null, status: 0, bytes: 0, expected: -1, ms: 0, error: `no result: ${process.stderrText().trim()}` };
    return JSON.parse(line) as DownloadResult;
  });
  const connected = new Promise<number | null>((resolve) => {
    let seen = '';
    const onData = (b: Buffer) => {
      seen += b.toString('utf8');
      const m = /\{"connected": (\d+)\}/.exec(seen);
      if (m) {
        process.child.stdout!.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    process.child.stdout!.on('data', onData);
    void closed.then(() => resolve(null));
  });
  return { process, result, connected };
}

export interface LoadRecord {
  readonly t0: number;
  readonly t1: number;
  readonly backend: string | null;
  readonly ok: boolean;
  readonly error?: string;
}

export interface LoadRun {
  /** Requests finished so far. */
  records(): LoadRecord[];
  /** Asks the generator to stop, waits for it and returns every record. */
  stop(): Promise<LoadRecord[]>;
}

/**
 * A steady stream of short HTTP requests (new connection each) until stop() or a bound: `maxRequests` in total,
 * `maxSeconds` of running time.
 */
export function startLoad(
  client: LabHost,
  python: string,
  o: { host: string; port: number; workers?: number; intervalMs?: number; maxRequests: number; maxSeconds: number },
): LoadRun {
  const stopFile = `/tmp/tula-load-stop-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const config = { workers: 4, intervalMs: 10, timeout: 5, ...o, stopFile };
  // no `timeout` wrapper: the lab's pdeathsig and stop() must reach python itself; it bounds its own run time
  const process = client.spawn([python, '-u', '-c', CLIENT_PY, 'load', JSON.stringify(config)]);
  const parse = () =>
    process
      .stdoutText()
      .split('\n')
      .filter((l) => l.startsWith('{"t0"'))
      .map((l) => JSON.parse(l) as LoadRecord);
  return {
    records: parse,
    async stop() {
      await client.exec(['touch', stopFile]);
      const done = await waitFor(() => !process.isRunning(), 15_000, 50);
      if (!done) await process.stop('SIGKILL');
      await client.exec(['rm', '-f', stopFile]);
      return parse();
    },
  };
}

/** rx/tx byte counters of a host's eth0. */
export async function interfaceBytes(host: LabHost, dev = 'eth0'): Promise<{ rx: number; tx: number }> {
  const r = await host.exec(['cat', `/sys/class/net/${dev}/statistics/rx_bytes`, `/sys/class/net/${dev}/statistics/tx_bytes`]);
  const [rx, tx] = r.stdout.trim().split('\n').map(Number);
  if (r.code !== 0 || !Number.isFinite(rx) || !Number.isFinite(tx)) throw new Error(`${host.name}: cannot read ${dev} counters: ${r.stderr.trim()}`);
  return { rx, tx };
}

export interface ByteShare {
  readonly download: DownloadResult;
  /** Bytes the client's eth0 received and sent during the download. */
  readonly clientBytes: number;
  /** Bytes the balancer's eth0 received and sent during the download. */
  readonly balancerBytes: number;
  /** balancerBytes / clientBytes. */
  readonly share: number;
}

/** Downloads 10 MiB through a VIP and compares the balancer's interface bytes with the client's. */
export async function measureByteShare(client: LabHost, lb: LabHost, python: string, o: { host: string; port: number }): Promise<ByteShare> {
  const [c0, l0] = await Promise.all([interfaceBytes(client), interfaceBytes(lb)]);
  const result = await download(client, python, { ...o, path: '/big' });
  const [c1, l1] = await Promise.all([interfaceBytes(client), interfaceBytes(lb)]);
  const clientBytes = c1.rx - c0.rx + (c1.tx - c0.tx);
  const balancerBytes = l1.rx - l0.rx + (l1.tx - l0.tx);
  return { download: result, clientBytes, balancerBytes, share: clientBytes > 0 ? balancerBytes / clientBytes : 1 };
}

/** Empties the balancer's L2 TCP flow map, so that the next flows are scheduled afresh (exact-count checks). */
export async function flushFlows(lb: LabHost, map = 'flows_l2_tcp'): Promise<void> {
  const r = await lb.exec(['nft', 'flush', 'map', 'netdev', 'tula_dsr', map]);
  if (r.code !== 0) throw new Error(`lb: nft flush map ${map} failed: ${r.stderr.trim()}`);
}
