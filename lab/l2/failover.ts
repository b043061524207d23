/**
 * Failover of a balancer pair in the L2 lab, measured from the client: a steady request loop through a VIP while a
 * fault hits the active member, and the times the other member needs to hold the VIP and to serve it.
 */
import type { LabHost } from '../topology';
import type { L2Lab } from './lab';
import { RUNTIME_LOG_FILE } from '../../model';
import { LoadRecord, startLoad } from './traffic';

/** Whether `host` holds `vip` on eth0 (keepalived put it there). */
export async function holdsVip(host: LabHost, vip: string): Promise<boolean> {
  const r = await host.exec(['ip', '-o', 'addr', 'show', 'dev', 'eth0', 'to', `${vip}/32`]);
  return r.code === 0 && r.stdout.trim() !== '';
}

/** Polls every 20 ms until `host` holds (or, with `held` false, no longer holds) the VIP; the time it took. */
export async function waitForVip(host: LabHost, vip: string, held: boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if ((await holdsVip(host, vip)) === held) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${host.name} ${held ? 'did not take' : 'did not give up'} ${vip} within ${timeoutMs} ms`);
}

export interface FailoverResult {
  /** From the fault until the other member holds the VIP. */
  readonly takeoverMs: number;
  /** From the fault until the end of the first request that started after it and succeeded (null: none did). */
  readonly firstSuccessMs: number | null;
  /** Requests of the loop in all, and those that failed. */
  readonly requests: number;
  readonly failures: number;
  /** The failed requests' errors, for the log. */
  readonly errors: string[];
}

/**
 * Runs `command` inside `host` and returns the host's clock (epoch ms) as soon as it has returned, when the fault is
 * in place: the lab's exec returns tens to hundreds of ms later on a loaded machine, and a clock read before the
 * command would count requests that the command (itself slow to start) did not yet disturb.
 */
export async function faultAt(host: LabHost, command: string): Promise<number> {
  const r = await host.exec(`${command} && date +%s%3N`);
  const at = Number(r.stdout.trim().split('\n').pop());
  if (r.code !== 0 || !Number.isFinite(at)) throw new Error(`on ${host.name}: ${command} exited ${r.code}: ${r.stderr.trim()}`);
  return at;
}

/**
 * Runs a request loop (4 workers, a new connection every 10 ms each) through `vip`:80, then `fault()`, which
 * returns the instant of the fault (see faultAt), and follows until `next` holds the VIP and 1.5 s more have passed.
 */
export async function measureFailover(l2: L2Lab, o: { vip: string; next: LabHost; fault: () => Promise<number>; timeoutMs?: number }): Promise<FailoverResult> {
  const load = startLoad(l2.client, l2.python, { host: o.vip, port: 80, workers: 4, intervalMs: 10, maxRequests: 20_000, maxSeconds: 60 });
  let records: LoadRecord[] = [];
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const at = await o.fault();
    await waitForVip(o.next, o.vip, true, o.timeoutMs ?? 10_000);
    // an upper bound: the poll itself takes tens of ms
    const takeoverMs = Date.now() - at;
    await new Promise((r) => setTimeout(r, 1500));
    records = await load.stop();
    const after = records.filter((r) => r.ok && r.t0 >= at).sort((a, b) => a.t1 - b.t1);
    const failed = records.filter((r) => !r.ok);
    return {
      takeoverMs,
      firstSuccessMs: after.length ? after[0].t1 - at : null,
      requests: records.length,
      failures: failed.length,
      errors: failed.map((r) => r.error ?? 'failed').slice(0, 10),
    };
  } finally {
    if (!records.length) await load.stop().catch(() => undefined);
  }
}

/**
 * The flow copy's lag, `samples` times: the client opens a connection to `vip`:80 from a port of its own and notes the
 * instant of its SYN; a loop inside `passive` lists its flow map until the connection's entry is there and notes that
 * instant (every lab host reads the same clock). Milliseconds, in sample order; a sample that did not arrive within
 * 5 s is null.
 */
export async function measureCopyLag(l2: L2Lab, passive: LabHost, vip: string, samples: number): Promise<(number | null)[]> {
  const lags: (number | null)[] = [];
  const base = 33000 + Math.floor(Math.random() * 20000);
  for (let i = 0; i < samples; i++) {
    const port = base + i;
    const key = `${l2.client.ip} . ${port} . ${vip} . 80 `;
    // an entry an earlier sample on the same port left goes first: only the new connection's copy counts
    const watch = `nft delete element netdev tula_dsr flows_l2_tcp '{ ${key}}' 2>/dev/null; until nft list map netdev tula_dsr flows_l2_tcp | grep -qF '${key}'; do :; done; date +%s%3N`;
    const watcher = passive.spawn(['timeout', '5', 'sh', '-c', watch]);
    await new Promise((r) => setTimeout(r, 100));
    const connect = [
      'import socket, sys, time',
      's = socket.socket()',
      `s.bind(('0.0.0.0', ${port}))`,
      't0 = time.time()',
      `s.connect(('${vip}', 80))`,
      "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')",
      's.recv(100)',
      's.close()',
      'print(int(t0 * 1000))',
    ].join('\n');
    const client = await l2.client.exec([l2.python, '-c', connect]);
    await watcher.exited;
    const seen = Number(watcher.stdoutText().trim());
    const sent = Number(client.stdout.trim());
    lags.push(client.code === 0 && Number.isFinite(seen) && seen > 0 ? seen - sent : null);
  }
  return lags;
}

/**
 * Waits until `passive`'s TCP flow map holds each of the client's connections to `vip`:80 from `ports`, with the
 * backend `active` has for it: the flow copy has landed, so a failover now keeps them. The MAC per port, or an error
 * naming what was missing when `timeoutMs` ran out.
 */
export async function waitForFlowCopies(
  l2: L2Lab,
  o: { active: LabHost; passive: LabHost; vip: string; ports: readonly number[]; timeoutMs: number },
): Promise<Record<number, string>> {
  const entries = async (host: LabHost) => {
    const listing = (await host.exec('nft list map netdev tula_dsr flows_l2_tcp')).stdout;
    const found: Record<number, string> = {};
    for (const m of listing.matchAll(/(\S+) \. (\d+) \. (\S+) \. 80 timeout \S+ expires \S+ : ([0-9a-f:]{17})/g)) {
      if (m[1] === l2.client.ip && m[3] === o.vip) found[Number(m[2])] = m[4];
    }
    return found;
  };
  const started = Date.now();
  let active: Record<number, string> = {};
  let passive: Record<number, string> = {};
  const landed = () => o.ports.every((p) => active[p] !== undefined && passive[p] === active[p]);
  while (Date.now() - started < o.timeoutMs) {
    [active, passive] = [await entries(o.active), await entries(o.passive)];
    if (landed()) return active;
    await new Promise((r) => setTimeout(r, 50));
  }
  const state = o.ports.map((p) => `${p}: ${o.active.name} ${active[p] ?? 'none'}, ${o.passive.name} ${passive[p] ?? 'none'}`).join('; ');
  // what each runtime said about the copy: sessions, refusals, nft errors
  const logs = await Promise.all([o.active, o.passive].map(async (h) => `${h.name}:\n${(await h.exec(`tail -n 25 ${RUNTIME_LOG_FILE}`)).stdout}`));
  throw new Error(
    `the flow copy of ${o.vip}:80 from ports ${o.ports.join(', ')} did not land on ${o.passive.name} within ${o.timeoutMs} ms (${state})\n${logs.join('\n')}`,
  );
}
