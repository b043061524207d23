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
  /** Connection-seconds the backend held over its recent ends, and how many ends: their ratio is the holding time. */
  heldSec: number;
  ends: number;
}

/**
 * How many of its latest ends a backend's holding time is measured over. The estimate is a ratio of sums, active
 * connection-seconds over ends (Little's law), not a smoothed ratio of the moment's active connections to a smoothed
 * end rate: at the slow backend's 4 to 5 ends a second, the smoothed rate varied by about 45% and the mean of its
 * inverse came out 10-20% high, which left that backend a connection below the level in the lab. Over 30 ends the
 * ratio's bias is about 3%, and a backend's window still spans only as long as its last 30 ends took.
 */
const HOLD_WINDOW_ENDS = 30;
/** Fewer ends than this tell too little: the backend is taken to hold as long as the others. */
const MIN_ENDS = 3;
/** How strongly a backend's distance from the level corrects its share (1: a backend at twice the level gets none). */
const FEEDBACK = 1;

const holdOf = (s: BackendState | undefined) => (s && s.ends >= MIN_ENDS && s.heldSec > 0 ? s.heldSec / s.ends : undefined);

export class LeastConnectionsPool {
  private readonly backends = new Map<string, BackendState>();
  private lastSampleMs?: number;

  /** Folds in a counter sample; counters that went down were reset (a reload): their delta counts from zero. */
  sample(counters: ReadonlyMap<string, BackendCounters>, nowMs: number): void {
    const elapsedSec = this.lastSampleMs !== undefined && nowMs > this.lastSampleMs ? (nowMs - this.lastSampleMs) / 1000 : 0;
    for (const [name, c] of counters) {
      const s = this.backends.get(name) ?? { created: 0, ended: 0, active: 0, heldSec: 0, ends: 0 };
      const created = countedSince(c.created, s.created);
      const ended = countedSince(c.ended, s.ended);
      const before = s.active;
      s.active = Math.max(0, s.active + created - ended);
      s.created = c.created;
      s.ended = c.ended;
      // from the first end on: connection-seconds before it belong to flows whose ends are still to come
      if (elapsedSec > 0 && (s.ends > 0 || ended > 0)) {
        s.heldSec += ((before + s.active) / 2) * elapsedSec;
        s.ends += ended;
        if (s.ends > HOLD_WINDOW_ENDS) {
          s.heldSec *= HOLD_WINDOW_ENDS / s.ends;
          s.ends = HOLD_WINDOW_ENDS;
        }
      }
      this.backends.set(name, s);
    }
    this.lastSampleMs = nowMs;
  }

  /**
   * Corrects the estimate with a count of the open flows, which drops the flows that ended without the client's FIN
   * or RST. The listing takes a while, during which flows start and end: `after` holds the counters read right after
   * it, so the count must match some estimate between the last sample's and `after`'s. Only a count outside that
   * range moves the estimate, to the range's nearer end. Replacing the estimate with the count outright counted the
   * flows that started during the listing twice (once listed, once in the next sample's new flows): at a load's
   * start the lab measured one extra connection on each backend for the next 30 s, and least connections held the
   * slow one a connection below the level.
   */
  correct(openFlows: ReadonlyMap<string, number>, after: ReadonlyMap<string, BackendCounters>): void {
    for (const [name, s] of this.backends) {
      const c = after.get(name);
      const later = c ? Math.max(0, s.active + countedSince(c.created, s.created) - countedSince(c.ended, s.ended)) : s.active;
      const open = openFlows.get(name) ?? 0;
      const low = Math.min(s.active, later);
      const high = Math.max(s.active, later);
      s.active = Math.max(0, s.active + (open < low ? open - low : open > high ? open - high : 0));
    }
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
    const known = states.map((b) => holdOf(b.state)).filter((h): h is number => h !== undefined);
    if (!known.length && !states.some((b) => (b.state?.active ?? 0) > 0))
      return new Map([...result, ...largestRemainder(new Map(open.map((b) => [b.name, b.weight])), slots)]);
    // a backend without an estimate yet (new, or never ended a flow) is taken to hold as long as the others
    const typicalHold = known.length ? known.reduce((a, b) => a + b, 0) / known.length : 1;
    const level = states.reduce((sum, b) => sum + (b.state?.active ?? 0), 0) / states.reduce((sum, b) => sum + b.weight, 0);
    const shares = new Map(
      states.map((b) => {
        const hold = holdOf(b.state) ?? typicalHold;
        const distance = (level - (b.state?.active ?? 0) / b.weight) / Math.max(level, 1);
        return [b.name, (b.weight / hold) * Math.max(0, 1 + FEEDBACK * distance)];
      }),
    );
    return new Map([...result, ...largestRemainder(shares, slots)]);
  }
}

/** What a counter counted since it read `before`; a counter below that was reset (a reload) and counts from zero. */
const countedSince = (now: number, before: number) => (now >= before ? now - before : now);

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
