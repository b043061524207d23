/**
 * Least connections on a DSR balancer, as a control loop. The balancer sees only the client's side, so it infers
 * each backend's active connections, as IPVS does in DR mode: new flows (SYN scheduled) minus flows the client ended
 * (FIN or RST), both counted per (pool, backend) by the data plane. The slot table cannot send each connection to
 * the current minimum, as a per-connection scheduler would: it is rewritten a few times a second and holds between
 * rewrites. So each round sets every backend's share of the new flows to what keeps active connections level per
 * weight in steady state, by Little's law (active = arrival rate × holding time: a backend that holds connections
 * ten times longer gets a tenth of the new flows), corrected in proportion to how far its active connections are
 * above or below the level now. Pouring the next interval's arrivals onto the current minimum instead overshoots:
 * measured in the lab (2 s and 0.2 s holds, 50/s), it left the slow backend with 20 active against 8.
 */

export interface BackendCounters {
  /** New flows scheduled to the backend by this pool, since the counters last started from zero. */
  readonly created: number;
  /** Flows the client ended on it. */
  readonly ended: number;
}

export interface LcBackend {
  readonly name: string;
  /** Configured weight (1 for plain least connections); 0 or a failed health check: no new flows. */
  readonly weight: number;
}

interface BackendState {
  created: number;
  ended: number;
  active: number;
  /** Flows ended per second, smoothed. */
  endRate: number;
  /** How long the backend holds a connection, in seconds (active / end rate, smoothed); unknown before any end. */
  holdSec?: number;
}

/** Smoothing of rates and holding times: the weight of the newest interval. */
const SMOOTHING = 0.3;
/** Below this many ends per second, the holding time estimate is too noisy to update. */
const MIN_END_RATE = 0.5;
/** How strongly a backend's distance from the level corrects its share (1: a backend at twice the level gets none). */
const FEEDBACK = 1;

export class LeastConnectionsPool {
  private readonly backends = new Map<string, BackendState>();
  private lastSampleMs?: number;
  private arrivals = 0;

  /** Folds in a counter sample; counters that went down were reset (a reload): their delta counts from zero. */
  sample(counters: ReadonlyMap<string, BackendCounters>, nowMs: number): void {
    const elapsedSec = this.lastSampleMs !== undefined && nowMs > this.lastSampleMs ? (nowMs - this.lastSampleMs) / 1000 : 0;
    this.arrivals = 0;
    for (const [name, c] of counters) {
      const s = this.backends.get(name) ?? { created: 0, ended: 0, active: 0, endRate: 0 };
      const created = c.created >= s.created ? c.created - s.created : c.created;
      const ended = c.ended >= s.ended ? c.ended - s.ended : c.ended;
      s.active = Math.max(0, s.active + created - ended);
      s.created = c.created;
      s.ended = c.ended;
      this.arrivals += created;
      if (elapsedSec > 0) {
        s.endRate = SMOOTHING * (ended / elapsedSec) + (1 - SMOOTHING) * s.endRate;
        if (s.endRate >= MIN_END_RATE) {
          const hold = s.active / s.endRate;
          s.holdSec = s.holdSec === undefined ? hold : SMOOTHING * hold + (1 - SMOOTHING) * s.holdSec;
        }
      }
      this.backends.set(name, s);
    }
    this.lastSampleMs = nowMs;
  }

  /** Replaces the estimate with a count of the open flows (which also drops the flows that expired silently). */
  correct(openFlows: ReadonlyMap<string, number>): void {
    for (const [name, s] of this.backends) s.active = openFlows.get(name) ?? 0;
  }

  /** The inferred active connections per backend. */
  active(): Map<string, number> {
    return new Map([...this.backends].map(([name, s]) => [name, s.active]));
  }

  /** Integer slot weights (summing to `slots`) until the next round; with no connections seen yet, the weights. */
  weights(backends: readonly LcBackend[], slots: number): Map<string, number> {
    const open = backends.filter((b) => b.weight > 0);
    const result = new Map(backends.map((b) => [b.name, 0]));
    if (!open.length || slots <= 0) return result;
    const states = open.map((b) => ({ ...b, state: this.backends.get(b.name) }));
    const known = states.map((b) => b.state?.holdSec).filter((h): h is number => h !== undefined && h > 0);
    if (!known.length && !states.some((b) => (b.state?.active ?? 0) > 0))
      return new Map([...result, ...largestRemainder(new Map(open.map((b) => [b.name, b.weight])), slots)]);
    // a backend without an estimate yet (new, or never ended a flow) is taken to hold as long as the others
    const typicalHold = known.length ? known.reduce((a, b) => a + b, 0) / known.length : 1;
    const level = states.reduce((sum, b) => sum + (b.state?.active ?? 0), 0) / states.reduce((sum, b) => sum + b.weight, 0);
    const shares = new Map(
      states.map((b) => {
        const hold = b.state?.holdSec && b.state.holdSec > 0 ? b.state.holdSec : typicalHold;
        const distance = (level - (b.state?.active ?? 0) / b.weight) / Math.max(level, 1);
        return [b.name, (b.weight / hold) * Math.max(0, 1 + FEEDBACK * distance)];
      }),
    );
    return new Map([...result, ...largestRemainder(shares, slots)]);
  }
}

/** Integer parts of `total` in proportion to `shares` (largest remainder); all zero shares give an equal split. */
export function largestRemainder(shares: ReadonlyMap<string, number>, total: number): Map<string, number> {
  const entries = [...shares];
  const sum = entries.reduce((s, [, v]) => s + v, 0);
  const exact = entries.map(([name, v]) => [name, sum > 0 ? (v / sum) * total : total / entries.length] as const);
  const result = new Map(exact.map(([name, v]) => [name, Math.floor(v)]));
  let left = total - [...result.values()].reduce((s, v) => s + v, 0);
  for (const [name] of [...exact].sort((a, b) => (b[1] % 1) - (a[1] % 1))) {
    if (left-- <= 0) break;
    result.set(name, result.get(name)! + 1);
  }
  return result;
}
