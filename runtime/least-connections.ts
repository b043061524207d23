/**
 * Least connections on a DSR balancer, as a control loop. The balancer sees only the client's side, so it infers
 * each backend's active connections, as IPVS does in DR mode: new flows (SYN scheduled) minus flows the client ended
 * (FIN or RST), both counted per (pool, backend) by the data plane; flows that expire without an end are invisible
 * to counters, so a periodic count of the open-flow map corrects the estimate. Every interval the slot table of each
 * least-connections pool is re-weighted so that the new flows expected before the next interval go where they even
 * out active connections per weight ("water filling"), not all to the current minimum, which would flood it.
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
}

/** Smoothing of the arrival rate: the weight of the newest interval. */
const RATE_SMOOTHING = 0.3;

export class LeastConnectionsPool {
  private readonly backends = new Map<string, BackendState>();
  /** New flows per second over all backends, smoothed. */
  private rate = 0;
  private lastSampleMs?: number;

  /** Folds in a counter sample; counters that went down were reset (a reload): their delta counts from zero. */
  sample(counters: ReadonlyMap<string, BackendCounters>, nowMs: number): void {
    let arrivals = 0;
    for (const [name, c] of counters) {
      const s = this.backends.get(name) ?? { created: 0, ended: 0, active: 0 };
      const created = c.created >= s.created ? c.created - s.created : c.created;
      const ended = c.ended >= s.ended ? c.ended - s.ended : c.ended;
      s.active = Math.max(0, s.active + created - ended);
      s.created = c.created;
      s.ended = c.ended;
      arrivals += created;
      this.backends.set(name, s);
    }
    if (this.lastSampleMs !== undefined && nowMs > this.lastSampleMs) {
      const perSecond = (arrivals * 1000) / (nowMs - this.lastSampleMs);
      this.rate = this.rate === 0 ? perSecond : RATE_SMOOTHING * perSecond + (1 - RATE_SMOOTHING) * this.rate;
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

  /**
   * Integer slot weights (summing to `slots`) for the next `horizonMs`: the expected arrivals are poured into the
   * backends with the fewest active connections per weight until they level out. With no traffic yet, the weights.
   */
  weights(backends: readonly LcBackend[], slots: number, horizonMs: number): Map<string, number> {
    const open = backends.filter((b) => b.weight > 0);
    const result = new Map(backends.map((b) => [b.name, 0]));
    if (!open.length || slots <= 0) return result;
    const expected = (this.rate * horizonMs) / 1000;
    const active = (name: string) => this.backends.get(name)?.active ?? 0;
    const shares =
      expected > 0
        ? waterFill(
            open.map((b) => ({ name: b.name, weight: b.weight, active: active(b.name) })),
            expected,
          )
        : undefined;
    const raw = new Map(open.map((b) => [b.name, shares?.get(b.name) ?? b.weight]));
    return new Map([...result, ...largestRemainder(raw, slots)]);
  }
}

/** Pours `amount` new connections so that (active + share) / weight is as even as possible. */
export function waterFill(backends: readonly { name: string; weight: number; active: number }[], amount: number): Map<string, number> {
  const byLevel = [...backends].sort((a, b) => a.active / a.weight - b.active / b.weight);
  // Raise the water level L from the lowest backend up: backend i is under water while active_i < L · weight_i.
  let level = 0;
  let weightSum = 0;
  let activeSum = 0;
  for (let i = 0; i < byLevel.length; i++) {
    weightSum += byLevel[i].weight;
    activeSum += byLevel[i].active;
    level = (amount + activeSum) / weightSum;
    const next = byLevel[i + 1];
    if (!next || level <= next.active / next.weight) break;
  }
  return new Map(backends.map((b) => [b.name, Math.max(0, level * b.weight - b.active)]));
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
