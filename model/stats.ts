import { BALANCER_TABLE, backendId } from './nft/balancer';
import { canonicalElementKey } from './nft/kept-elements';
import { VipIdentity, nftVipKey } from './vip-key';
import { Pool, groupPools, poolIdOfClassid, poolName } from './nft/pools';
import type { RuntimeState } from './runtime-state';
import type { Algorithm, BalancerSpec, Mode, Protocol } from './spec';

/**
 * Live statistics of a balancer, from the counters of its nft table (named ones per backend, set elements per VIP
 * and per pool and backend: see nft/balancer.ts) and the runtime's state file. A DSR balancer forwards only what clients send: every packet and byte figure here is client→backend;
 * replies go from the backends straight to the clients and no figure can include them.
 */

/**
 * The one listing a sample needs. nft (1.0.6) loads every set element of the ruleset before it prints any counter,
 * whatever it is asked for, so one listing of all counters costs what one counter costs. The text form is about a
 * third of the JSON form's bytes (440 KB against 1.2 MB at 10,000 VIPs) and lists the same figures.
 */
export const STATS_COUNTERS_COMMAND: readonly string[] = ['nft', 'list', 'counters', 'table', 'netdev', BALANCER_TABLE];

/** A runtime state older than this (by the balancer's clock) is shown as stale: the runtime writes it every few seconds. */
export const RUNTIME_STATE_STALE_SEC = 15;

export interface CounterValue {
  readonly packets: number;
  readonly bytes: number;
}

/**
 * Named counters from `nft list counters …` (text) or `nft -j list counters …` (JSON), by name. Values above 2^53
 * lose precision (JSON numbers do anyway). Throws on text that is neither form.
 */
export function parseNftCounters(output: string): Map<string, CounterValue> {
  const text = output.trim();
  const counters = new Map<string, CounterValue>();
  if (text === '') return counters;
  if (text.startsWith('{')) {
    const parsed = JSON.parse(text) as { nftables?: { counter?: { name?: unknown; packets?: unknown; bytes?: unknown } }[] };
    if (!Array.isArray(parsed.nftables)) throw new Error('nft JSON output has no "nftables" array');
    for (const item of parsed.nftables) {
      const c = item.counter;
      if (c && typeof c.name === 'string' && typeof c.packets === 'number' && typeof c.bytes === 'number')
        counters.set(c.name, { packets: c.packets, bytes: c.bytes });
    }
    return counters;
  }
  // table netdev tula_dsr {
  // 	counter vip_web {
  // 		packets 600 bytes 36000
  // 	}
  const blocks = [...text.matchAll(/^\s*counter (\S+) \{\s*\n\s*packets (\d+) bytes (\d+)\s*\n\s*\}/gm)];
  if (blocks.length === 0 && !/^table \S+ \S+ \{/m.test(text)) throw new Error(`not an nft counters listing: ${JSON.stringify(text.slice(0, 80))}`);
  for (const [, name, packets, bytes] of blocks) counters.set(name, { packets: Number(packets), bytes: Number(bytes) });
  return counters;
}

/**
 * The name stats give the count of a pool's new (`new`) or client-ended (`end`) flows to one backend. The data plane
 * counts them in the elements of its counter sets `pool_new_<mode>` / `pool_ended_<mode>`, keyed by (pool, backend
 * MAC or mark); parsePoolFlowSets turns those elements into these names.
 */
export function flowCounterName(role: 'new' | 'end', poolId: number, backendIp: string): string {
  return `${role}_${poolName(poolId)}_${backendId(backendIp)}`;
}

/**
 * The name stats give the packets and bytes of one VIP. The data plane counts them in the element of the VIP's key
 * in its set of VIP_STATS_SETS (`vip_stats_port`, …); parseVipStatsSets turns those elements into these names.
 */
export function vipCounterName(vip: VipIdentity): string {
  let name = counterNames.get(vip);
  if (name === undefined) counterNames.set(vip, (name = `vip ${canonicalElementKey(nftVipKey(vip))}`));
  return name;
}

// the runtime and `stats --watch` sample the same spec again and again: each VIP's name is worked out once
const counterNames = new WeakMap<VipIdentity, string>();

/** The elements of listed VIP statistics sets (`<address> . <protocol>[ . <port>] counter packets N bytes M`) by vipCounterName. */
export function parseVipStatsSets(listings: readonly string[]): Map<string, CounterValue> {
  const counters = new Map<string, CounterValue>();
  for (const text of listings) {
    for (const m of text.matchAll(/((?:[0-9a-f.:]+) \. \S+(?: \. \d+)?) counter packets (\d+) bytes (\d+)/g))
      counters.set(`vip ${canonicalElementKey(m[1])}`, { packets: Number(m[2]), bytes: Number(m[3]) });
  }
  return counters;
}

/** The counter sets of the (pool, backend) flows, by role and mode: what a sample lists besides the named counters. */
export const POOL_FLOW_SETS: readonly { readonly role: 'new' | 'end'; readonly set: string }[] = [
  { role: 'new', set: 'pool_new_l2' },
  { role: 'end', set: 'pool_ended_l2' },
  { role: 'new', set: 'pool_new_l3' },
  { role: 'end', set: 'pool_ended_l3' },
];

/** The map whose elements name each L2 backend's counter by its MAC (`<mac> : "be_<backend id>"`). */
export const BACKEND_MAC_MAP = 'backend_counter_l2';

/**
 * `<mac> : "be_<id>"` elements of `nft list map … backend_counter_l2` (and of its IPv6 twin): MAC → backend ids. A
 * dual-stack host's MAC names two backends, its IPv4 and its IPv6 address; a pool's counter names pick the right one.
 */
export function parseBackendMacs(text: string): Map<string, string[]> {
  const macs = new Map<string, string[]>();
  for (const m of text.matchAll(/([0-9a-f]{2}(?::[0-9a-f]{2}){5}) : "?be_([0-9a-f]{32}|[0-9a-f]{8})"?/g)) macs.set(m[1], [...(macs.get(m[1]) ?? []), m[2]]);
  return macs;
}

/**
 * The elements of listed pool counter sets (`<major>:<minor> . <mac or mark> counter packets N bytes M`) as counters
 * named by flowCounterName. An L2 element names its backend by MAC (macs: MAC → backend id); an L3 one by mark,
 * which is the backend id.
 */
export function parsePoolFlowSets(
  listings: readonly { readonly role: 'new' | 'end'; readonly text: string }[],
  macs: ReadonlyMap<string, readonly string[]>,
): Map<string, CounterValue> {
  const counters = new Map<string, CounterValue>();
  for (const { role, text } of listings) {
    for (const m of text.matchAll(/([0-9a-f]+):([0-9a-f]+) \. (\S+) counter packets (\d+) bytes (\d+)/g)) {
      const id = poolIdOfClassid(`${m[1]}:${m[2]}`);
      const backends = /^0x[0-9a-f]+$/.test(m[3]) ? [m[3].slice(2).padStart(8, '0')] : (macs.get(m[3]) ?? []);
      for (const backend of backends) counters.set(`${role}_${poolName(id)}_${backend}`, { packets: Number(m[4]), bytes: Number(m[5]) });
    }
  }
  return counters;
}

/**
 * `unknown`: no runtime state (no runtime runs on the balancer, or it wrote nothing yet); `unchecked`: the runtime
 * runs but checks nothing on this backend; `up` / `down`: its health check's verdict.
 */
export type HealthState = 'up' | 'down' | 'unchecked' | 'unknown';

/** Where an active-connections figure comes from: the runtime's estimate, or new − ended flows (an upper bound). */
export type ActiveSource = 'runtime' | 'upper-bound';

export interface PoolBackendStats {
  readonly name: string;
  readonly address: string;
  readonly weight: number;
  /** New flows the pool scheduled to this backend (every VIP of the pool); null when the counter is missing. */
  readonly newFlows: number | null;
  /** Flows the client ended there (FIN or RST); UDP flows never end this way. */
  readonly endedFlows: number | null;
  /** Inferred active connections; null for UDP without a runtime estimate (UDP has no end signal). */
  readonly active: number | null;
  readonly activeSource: ActiveSource | null;
  readonly health: HealthState;
  /** When the health state last changed (epoch seconds, balancer clock). */
  readonly healthSince?: number;
  /** Why the last probe failed. */
  readonly lastError?: string;
}

export interface PoolStats {
  /** 8 hex digits, as in the counter names and the runtime state. */
  readonly id: string;
  readonly mode: Mode;
  readonly protocol: Protocol;
  readonly algorithm: Algorithm;
  /** The VIPs that share this pool's slots and flow counters, by name. */
  readonly vips: readonly string[];
  /** Every backend failed its check and the pool sends to all of them; null without runtime state. */
  readonly failOpen: boolean | null;
  /** When the runtime last changed the pool's slot table. */
  readonly changedAt?: number;
  readonly backends: readonly PoolBackendStats[];
}

export interface VipStats {
  readonly name: string;
  readonly address: string;
  readonly port: number | '*';
  readonly protocol: Protocol;
  readonly mode: Mode;
  readonly algorithm: Algorithm;
  /** Its pool's id: the per-backend flow figures are the pool's. */
  readonly pool: string;
  /** Packets of this VIP forwarded towards its backends (client→backend only). */
  readonly packets: number | null;
  readonly bytes: number | null;
  /** New flows of its pool (the sum over the pool's backends); the VIP's own when the pool has no other VIP. */
  readonly newFlows: number | null;
  /** Inferred active connections of its pool. */
  readonly active: number | null;
  readonly activeSource: ActiveSource | null;
  readonly health: { readonly backends: number; readonly down: number; readonly drained: number; readonly failOpen: boolean | null; readonly known: boolean };
}

export interface BackendStats {
  readonly address: string;
  /** The 8 hex digits in its counter's name. */
  readonly id: string;
  /** The names VIPs give it (usually one). */
  readonly names: readonly string[];
  /** Packets forwarded to it for every VIP (client→backend only). */
  readonly packets: number | null;
  readonly bytes: number | null;
}

export interface RuntimeSummary {
  readonly pid: number;
  readonly startedAt: number;
  readonly updatedAt: number;
  /** The state is older than RUNTIME_STATE_STALE_SEC by the balancer's clock: the runtime may not be running. */
  readonly stale: boolean;
}

export interface StatsSnapshot {
  readonly balancer: string;
  readonly interface: string;
  /** When the counters were read (epoch seconds with a fraction, balancer clock). */
  readonly sampledAt: number;
  /** How long the counters listing took on the balancer, when known. */
  readonly listingMs?: number;
  readonly runtime: RuntimeSummary | null;
  readonly vips: readonly VipStats[];
  readonly pools: readonly PoolStats[];
  readonly backends: readonly BackendStats[];
  /** Counters the spec names that the balancer does not have: it does not run this spec's configuration. */
  readonly missingCounters: readonly string[];
}

export interface SnapshotInput {
  readonly spec: BalancerSpec;
  /** `groupPools(spec.vips)`, from a caller that samples the same spec again and again (grouping 10,000 VIPs takes ~0.2 s). */
  readonly pools?: readonly Pool[];
  readonly counters: ReadonlyMap<string, CounterValue>;
  readonly runtime?: RuntimeState | null;
  readonly sampledAt: number;
  readonly listingMs?: number;
}

const sum = (values: readonly (number | null)[]): number | null => (values.some((v) => v === null) ? null : values.reduce<number>((a, v) => a + v!, 0));

/** The state of a (pool, backend) from the runtime: the pool's down list, dated by the backend's latest check change. */
function healthOf(runtime: RuntimeState | null, pool: string, address: string): Pick<PoolBackendStats, 'health' | 'healthSince' | 'lastError'> {
  if (!runtime) return { health: 'unknown' };
  const checks = runtime.checks.filter((c) => c.backend === address);
  if (checks.length === 0) return { health: 'unchecked' };
  // a pool the runtime does not list is not checked, even where its backend is checked for another VIP
  const listed = runtime.pools.find((p) => p.id === pool);
  if (!listed) return { health: 'unchecked' };
  const down = listed.down.includes(address);
  const matching = checks.filter((c) => c.state === (down ? 'down' : 'up'));
  const latest = [...(matching.length ? matching : checks)].sort((a, b) => b.since - a.since)[0];
  return { health: down ? 'down' : 'up', healthSince: latest.since, ...(down && latest.lastError ? { lastError: latest.lastError } : {}) };
}

/** Builds what `tula-dsr stats` shows from the spec the balancer runs, its counters and the runtime's state. */
export function buildStatsSnapshot(input: SnapshotInput): StatsSnapshot {
  const { spec, counters, sampledAt } = input;
  const runtime = input.runtime ?? null;
  const missing = new Set<string>();
  const read = (name: string): CounterValue | null => {
    const value = counters.get(name);
    if (!value) missing.add(name);
    return value ?? null;
  };

  const pools: PoolStats[] = (input.pools ?? groupPools(spec.vips)).map((pool) => {
    const id = poolName(pool.id);
    const state = runtime?.pools.find((p) => p.id === id);
    const estimates = runtime?.active?.[id];
    const backends = pool.backends.map((b): PoolBackendStats => {
      const newFlows = read(flowCounterName('new', pool.id, b.ip))?.packets ?? null;
      const endedFlows = read(flowCounterName('end', pool.id, b.ip))?.packets ?? null;
      const estimate = estimates?.[b.ip];
      const upperBound = pool.protocol === 'tcp' && newFlows !== null && endedFlows !== null ? Math.max(0, newFlows - endedFlows) : null;
      const active = estimate ?? upperBound;
      return {
        name: b.name,
        address: b.ip,
        weight: b.weight,
        newFlows,
        endedFlows,
        active,
        activeSource: estimate !== undefined ? 'runtime' : active === null ? null : 'upper-bound',
        ...healthOf(runtime, id, b.ip),
      };
    });
    return {
      id,
      mode: pool.mode,
      protocol: pool.protocol,
      algorithm: pool.algorithm,
      vips: pool.vips,
      failOpen: runtime ? (state?.failOpen ?? false) : null,
      ...(state ? { changedAt: state.changedAt } : {}),
      backends,
    };
  });
  const poolOfVip = new Map(pools.flatMap((p) => p.vips.map((v) => [v, p] as const)));

  const vips = [...spec.vips]
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((vip): VipStats => {
      const pool = poolOfVip.get(vip.name)!;
      const counter = read(vipCounterName(vip));
      const sources = new Set(pool.backends.map((b) => b.activeSource));
      return {
        name: vip.name,
        address: vip.ip,
        port: vip.port,
        protocol: vip.protocol,
        mode: vip.mode,
        algorithm: vip.algorithm,
        pool: pool.id,
        packets: counter?.packets ?? null,
        bytes: counter?.bytes ?? null,
        newFlows: sum(pool.backends.map((b) => b.newFlows)),
        active: sources.has(null) ? null : sum(pool.backends.map((b) => b.active)),
        activeSource: sources.has(null) ? null : sources.has('upper-bound') ? 'upper-bound' : 'runtime',
        health: {
          backends: pool.backends.length,
          down: pool.backends.filter((b) => b.health === 'down').length,
          drained: pool.backends.filter((b) => b.weight === 0).length,
          failOpen: pool.failOpen,
          known: runtime !== null,
        },
      };
    });

  const byAddress = new Map<string, Set<string>>();
  for (const vip of spec.vips) for (const b of vip.backends) byAddress.set(b.ip, (byAddress.get(b.ip) ?? new Set()).add(b.name));
  const backends = [...byAddress.entries()]
    .map(([address, names]): BackendStats => {
      const id = backendId(address);
      const counter = read(`be_${id}`);
      return { address, id, names: [...names].sort(), packets: counter?.packets ?? null, bytes: counter?.bytes ?? null };
    })
    .sort((a, b) => (a.id < b.id ? -1 : 1));

  return {
    balancer: spec.name,
    interface: spec.interface,
    sampledAt,
    ...(input.listingMs !== undefined ? { listingMs: input.listingMs } : {}),
    runtime: runtime && {
      pid: runtime.pid,
      startedAt: runtime.startedAt,
      updatedAt: runtime.updatedAt,
      stale: sampledAt - runtime.updatedAt > RUNTIME_STATE_STALE_SEC,
    },
    vips,
    pools,
    backends,
    missingCounters: [...missing].sort(),
  };
}

export interface TrafficRates {
  readonly packetsPerSec: number | null;
  readonly bytesPerSec: number | null;
}

export interface FlowRates {
  readonly newFlowsPerSec: number | null;
  readonly endedFlowsPerSec: number | null;
}

/** Per-second rates between two snapshots of the same balancer; null where a counter is missing or went back (reset). */
export interface StatsRates {
  readonly intervalSec: number;
  readonly vips: ReadonlyMap<string, TrafficRates & { readonly newFlowsPerSec: number | null }>;
  /** By pool id, then backend address. */
  readonly pools: ReadonlyMap<string, ReadonlyMap<string, FlowRates>>;
  /** By backend address. */
  readonly backends: ReadonlyMap<string, TrafficRates>;
}

function perSecond(now: number | null | undefined, before: number | null | undefined, seconds: number): number | null {
  if (now === null || now === undefined || before === null || before === undefined || now < before) return null;
  return (now - before) / seconds;
}

/** Rates from `previous` to `current`, or null when no time passed between them. */
export function statsRates(current: StatsSnapshot, previous: StatsSnapshot): StatsRates | null {
  const seconds = current.sampledAt - previous.sampledAt;
  if (!(seconds > 0)) return null;
  const vipBefore = new Map(previous.vips.map((v) => [v.name, v]));
  const poolBefore = new Map(previous.pools.map((p) => [p.id, new Map(p.backends.map((b) => [b.address, b]))]));
  const backendBefore = new Map(previous.backends.map((b) => [b.address, b]));
  return {
    intervalSec: seconds,
    vips: new Map(
      current.vips.map((v) => {
        const before = vipBefore.get(v.name);
        return [
          v.name,
          {
            packetsPerSec: perSecond(v.packets, before?.packets, seconds),
            bytesPerSec: perSecond(v.bytes, before?.bytes, seconds),
            newFlowsPerSec: perSecond(v.newFlows, before?.newFlows, seconds),
          },
        ];
      }),
    ),
    pools: new Map(
      current.pools.map((p) => [
        p.id,
        new Map(
          p.backends.map((b) => {
            const before = poolBefore.get(p.id)?.get(b.address);
            return [
              b.address,
              { newFlowsPerSec: perSecond(b.newFlows, before?.newFlows, seconds), endedFlowsPerSec: perSecond(b.endedFlows, before?.endedFlows, seconds) },
            ];
          }),
        ),
      ]),
    ),
    backends: new Map(
      current.backends.map((b) => {
        const before = backendBefore.get(b.address);
        return [b.address, { packetsPerSec: perSecond(b.packets, before?.packets, seconds), bytesPerSec: perSecond(b.bytes, before?.bytes, seconds) }];
      }),
    ),
  };
}
