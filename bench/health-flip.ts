/**
 * Health change → data plane updated, measured inside the balancer's namespaces (the bench runs it there with
 * nsenter, so `nft` and the host lock are the balancer's own, as for the real runtime):
 *
 *   node dist/bench/health-flip.js CONFIG STATE_PATH FLIPS BACKEND_IP
 *
 * It runs the runtime's core (runtime/runtime.ts: health monitor, pool sync, the real `nft` under the host lock,
 * the real probe routing) on the configuration the agent would install, with one difference: the probe is a
 * function the bench flips instead of a socket. The check has fall = rise = 1, so the first probe after a flip is
 * the transition. Each flip (down, up, down, …) is timed from the moment that probe returns its result to the
 * moment `nft -f` has committed the pool sync's transaction, and checked afterwards in the kernel: the backend's
 * MAC is in no slot and no live element of any pool while it is down, and in every pool once it is up again.
 * Prints one JSON object (FlipReport) on stdout.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { ProbeTarget, groupPools, parseRuntimeConfig, poolClassid } from '../model';
import { NftRunner, systemNft } from '../runtime/nft';
import type { ProbeResult } from '../runtime/probes';
import { Runtime } from '../runtime/runtime';

export interface FlipReport {
  /** Probe result → transaction committed, per flip (ms). */
  readonly totalMs: number[];
  /** Of which the `flock … nft -f -` process (ms). */
  readonly nftMs: number[];
  /** Elements the transaction deleted and added, per flip. */
  readonly elements: number[];
  /** The transaction's text, per flip (bytes). */
  readonly bytes: number[];
  /** Managed pools the runtime keeps. */
  readonly pools: number;
  /** The runtime's own start (configuration read, probe routing, first sync with the live maps listed), ms. */
  readonly startMs: number;
}

interface Committed {
  readonly started: number;
  readonly ended: number;
  readonly text: string;
}

// generous: on the shared machine, at load averages above 25, one flip of 2,500 pools took 6 s
const FLIP_TIMEOUT_MS = 30_000;

/** nft as the runtime runs it, telling the bench when each transaction has been committed. */
function observedNft(onCommit: (c: Committed) => void): NftRunner {
  const real = systemNft();
  return {
    list: (kind, name) => real.list(kind, name),
    async apply(text) {
      const started = performance.now();
      await real.apply(text);
      onCommit({ started, ended: performance.now(), text });
    },
  };
}

/** Counts the backend's MAC per pool in the slot map and the live set, as the kernel holds them now. */
async function presence(nft: NftRunner, mac: string): Promise<{ slots: Map<string, number>; live: Set<string> }> {
  const slots = new Map<string, number>();
  for (const e of (await nft.list('map', 'slots_l2_rt')) ?? []) if (e.value === mac) slots.set(e.key[0], (slots.get(e.key[0]) ?? 0) + 1);
  const live = new Set(((await nft.list('set', 'live_l2_rt')) ?? []).filter((e) => e.key[1] === mac).map((e) => e.key[0]));
  return { slots, live };
}

async function main(argv: readonly string[]): Promise<FlipReport> {
  const [configPath, statePath, flipsArg, backendIp] = argv;
  const flips = Number(flipsArg);
  const config = parseRuntimeConfig(readFileSync(configPath, 'utf8'));
  const mac = config.facts.backendMacs[backendIp]?.toLowerCase();
  if (!mac || !(flips > 0)) throw new Error(`usage: health-flip CONFIG STATE FLIPS BACKEND_IP (a backend of the configuration)`);
  const classids = groupPools(config.balancer.vips).map((p) => poolClassid(p.id));

  let waiting: ((c: Committed) => void) | null = null;
  const nft = observedNft((c) => waiting?.(c));
  const down = new Set<string>();
  let flippedAt: number | null = null;
  let watching = false;
  const probe = async (target: ProbeTarget): Promise<ProbeResult> => {
    const ok = !down.has(target.backend.ip);
    if (watching && flippedAt === null && target.backend.ip === backendIp) flippedAt = performance.now();
    return ok ? { ok, ms: 0 } : { ok, ms: 0, error: 'flipped down by the bench' };
  };
  // its errors go to stderr, which the bench shows when a flip fails
  const log = (level: string, message: string) => void (level === 'error' && process.stderr.write(`runtime error: ${message}\n`));
  const runtime = new Runtime(configPath, { nft, log, now: Date.now, statePath, probe });
  const t0 = performance.now();
  runtime.load();
  await runtime.start();
  const startMs = performance.now() - t0;

  const report: FlipReport = { totalMs: [], nftMs: [], elements: [], bytes: [], pools: classids.length, startMs };
  try {
    for (let i = 0; i < flips; i++) {
      const goingDown = i % 2 === 0;
      const committed = new Promise<Committed>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`flip ${i + 1}: no transaction within ${FLIP_TIMEOUT_MS} ms`)), FLIP_TIMEOUT_MS);
        waiting = (c) => {
          clearTimeout(timer);
          waiting = null;
          resolve(c);
        };
      });
      flippedAt = null;
      if (goingDown) down.add(backendIp);
      else down.delete(backendIp);
      watching = true;
      const c = await committed;
      watching = false;
      if (flippedAt === null) throw new Error(`flip ${i + 1}: a transaction came before any probe saw the flip`);
      report.totalMs.push(c.ended - flippedAt);
      report.nftMs.push(c.ended - c.started);
      const statements = c.text.split('\n').filter((l) => /^(add|delete) element /.test(l));
      report.elements.push(statements.reduce((n, l) => n + l.split(',').length, 0));
      report.bytes.push(Buffer.byteLength(c.text));
      const seen = await presence(nft, mac);
      const pools = goingDown ? 0 : classids.length;
      if (seen.slots.size !== pools || seen.live.size !== pools) {
        throw new Error(
          `flip ${i + 1} (${goingDown ? 'down' : 'up'}): the kernel has ${backendIp} in the slots of ${seen.slots.size} and the live set of ${seen.live.size} of ${classids.length} pools, not ${pools}`,
        );
      }
    }
  } finally {
    await runtime.stop();
  }
  return report;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    // the runtime's probe routing and timers are gone (stop), but a socket may linger: exit once the report is out
    (report) => process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(0)),
    (error: Error) => {
      process.stderr.write(`health-flip: ${error.message}\n`);
      process.exit(1);
    },
  );
}
