import { BackendStats, FlowRates, PoolBackendStats, PoolStats, StatsSnapshot, TrafficRates, VipStats, statsRates } from './stats';

/**
 * `tula-dsr stats --json`: `{ "version": 1, "balancers": [StatsJson | StatsJsonError, …] }`, one document per sample
 * (one line each with --watch). Fields are only ever added within a version. Counts are totals since the balancer's
 * counters were created; a count is null when the balancer lacks its counter (see `missingCounters`); `rates` is
 * null on the first sample and per second after it; times are epoch seconds on the balancer's clock.
 */
export const STATS_JSON_VERSION = 1;

export interface StatsJson extends Omit<StatsSnapshot, 'vips' | 'pools' | 'backends'> {
  /** Seconds since the previous sample the rates are computed over; null on the first sample. */
  readonly intervalSec: number | null;
  readonly vips: readonly (VipStats & { readonly rates: (TrafficRates & { readonly newFlowsPerSec: number | null }) | null })[];
  readonly pools: readonly (Omit<PoolStats, 'backends'> & { readonly backends: readonly (PoolBackendStats & { readonly rates: FlowRates | null })[] })[];
  readonly backends: readonly (BackendStats & { readonly rates: TrafficRates | null })[];
}

/** A balancer that could not be sampled. */
export interface StatsJsonError {
  readonly balancer: string;
  readonly error: { readonly kind: string; readonly message: string };
}

export interface StatsJsonDocument {
  readonly version: typeof STATS_JSON_VERSION;
  readonly balancers: readonly (StatsJson | StatsJsonError)[];
}

/** One balancer's sample as JSON data, with rates since `previous` when given. */
export function statsJson(snapshot: StatsSnapshot, previous?: StatsSnapshot): StatsJson {
  const rates = previous ? statsRates(snapshot, previous) : null;
  return {
    ...snapshot,
    intervalSec: rates?.intervalSec ?? null,
    vips: snapshot.vips.map((v) => ({ ...v, rates: rates?.vips.get(v.name) ?? null })),
    pools: snapshot.pools.map((p) => ({ ...p, backends: p.backends.map((b) => ({ ...b, rates: rates?.pools.get(p.id)?.get(b.address) ?? null })) })),
    backends: snapshot.backends.map((b) => ({ ...b, rates: rates?.backends.get(b.address) ?? null })),
  };
}
