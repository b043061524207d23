/**
 * A balancer spec with every kind of pool the statistics distinguish (its own TCP pool, a TCP pool shared by two
 * VIPs with a drained backend, a UDP pool), counters for it, and runtime states, for the renderer tests.
 */
import {
  BalancerSpec,
  CounterValue,
  RuntimeState,
  StatsSnapshot,
  backendId,
  buildStatsSnapshot,
  flowCounterName,
  groupPools,
  poolName,
  vipCounterName,
} from '../../model';
import { backends, balancerSpec } from './render-fixtures';

export const STATS_SPEC: BalancerSpec = balancerSpec([
  { name: 'web', ip: '10.0.1.100', port: 80, algorithm: 'weighted-round-robin', backends: backends([1, 2, 3]) },
  { name: 'api', ip: '10.0.1.101', port: 8080, algorithm: 'round-robin', backends: backends([1, 0]) },
  { name: 'apitls', ip: '10.0.1.101', port: 8443, algorithm: 'round-robin', backends: backends([1, 0]) },
  { name: 'dns', ip: '10.0.1.102', port: 53, protocol: 'udp', algorithm: 'round-robin', backends: backends([1, 1, 1]) },
]);

export const SAMPLED_AT = 1_750_000_000.25;

/** The name the sample gives the counter of the spec's VIP `name` (its element in the VIP statistics sets). */
export const vipCounter = (name: string) => vipCounterName(STATS_SPEC.vips.find((v) => v.name === name)!);

export const poolId = (vip: string) => groupPools(STATS_SPEC.vips).find((p) => p.vips.includes(vip))!.id;

/** Counters after some traffic; `scale` multiplies every figure (a later sample). */
export function statsCounters(scale = 1): Map<string, CounterValue> {
  const c = new Map<string, CounterValue>();
  const set = (name: string, packets: number, bytes = packets * 60) => c.set(name, { packets: packets * scale, bytes: bytes * scale });
  set(vipCounter('web'), 3600, 252_000);
  set(vipCounter('api'), 700, 42_000);
  set(vipCounter('apitls'), 300, 18_000);
  set(vipCounter('dns'), 90, 5_400);
  const flows: [string, string, number, number][] = [
    ['web', '10.0.1.11', 100, 98],
    ['web', '10.0.1.12', 200, 195],
    ['web', '10.0.1.13', 300, 300],
    ['api', '10.0.1.11', 150, 140],
    ['api', '10.0.1.12', 50, 50],
    ['dns', '10.0.1.11', 30, 0],
    ['dns', '10.0.1.12', 30, 0],
    ['dns', '10.0.1.13', 30, 0],
  ];
  for (const [vip, ip, started, ended] of flows) {
    set(flowCounterName('new', poolId(vip), ip), started);
    set(flowCounterName('end', poolId(vip), ip), ended);
  }
  set(`be_${backendId('10.0.1.11')}`, 1500, 90_000);
  set(`be_${backendId('10.0.1.12')}`, 1490, 89_400);
  set(`be_${backendId('10.0.1.13')}`, 1700, 102_000);
  return c;
}

/** be2 failed its TCP check 42 s before the sample; every backend of the api pool is down, so it fails open. */
export function statsRuntime(overrides: Partial<RuntimeState> = {}): RuntimeState {
  const api = groupPools(STATS_SPEC.vips).find((p) => p.vips.includes('api'))!;
  const t = Math.floor(SAMPLED_AT);
  return {
    version: 1,
    config: 'f'.repeat(64),
    pid: 4242,
    startedAt: t - 3600,
    updatedAt: t - 2,
    checks: [
      { backend: '10.0.1.11', check: 'tcp:80', kind: 'tcp', vip: '10.0.1.100', state: 'down', since: t - 5, lastError: 'connection refused' },
      { backend: '10.0.1.12', check: 'tcp:80', kind: 'tcp', vip: '10.0.1.100', state: 'down', since: t - 42, lastError: 'timed out after 1 s' },
      { backend: '10.0.1.13', check: 'tcp:80', kind: 'tcp', vip: '10.0.1.100', state: 'up', since: t - 3600 },
    ],
    pools: [
      { id: poolName(api.id), vips: api.vips.slice(), down: ['10.0.1.11', '10.0.1.12'], failOpen: true, changedAt: t - 5 },
      ...groupPools(STATS_SPEC.vips)
        .filter((p) => p !== api)
        .map((p) => ({ id: poolName(p.id), vips: p.vips.slice(), down: ['10.0.1.11', '10.0.1.12'], failOpen: false, changedAt: t - 5 })),
    ],
    active: { [poolName(poolId('web'))]: { '10.0.1.11': 1, '10.0.1.12': 4, '10.0.1.13': 0 } },
    ...overrides,
  };
}

export function statsSnapshot(o: { scale?: number; sampledAt?: number; runtime?: RuntimeState | null } = {}): StatsSnapshot {
  return buildStatsSnapshot({
    spec: STATS_SPEC,
    counters: statsCounters(o.scale),
    runtime: o.runtime === undefined ? statsRuntime() : o.runtime,
    sampledAt: o.sampledAt ?? SAMPLED_AT,
    listingMs: 4,
  });
}
