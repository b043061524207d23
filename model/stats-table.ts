import { PoolBackendStats, StatsRates, StatsSnapshot, VipStats, statsRates } from './stats';
import { formatAge, formatBytes, formatRate, formatUtc, renderColumns } from './stats-format';

const NONE = '-';
const count = (value: number | null) => (value === null ? NONE : String(value));
const bytes = (value: number | null) => (value === null ? NONE : formatBytes(value));
const rate = (value: number | null | undefined) => (value === null || value === undefined ? NONE : formatRate(value));
const byteRate = (value: number | null | undefined) => (value === null || value === undefined ? NONE : `${formatBytes(Math.round(value))}/s`);

function vipAddress(vip: VipStats): string {
  return `${vip.address}:${vip.port}/${vip.protocol}`;
}

/** "≤12" marks new − ended flows, an upper bound; the runtime's estimate shows as it is. */
function active(value: number | null, source: string | null): string {
  if (value === null) return NONE;
  return source === 'upper-bound' ? `≤${value}` : String(value);
}

function vipHealth(vip: VipStats): string {
  const h = vip.health;
  if (!h.known) return NONE;
  const parts = [`${h.backends - h.down}/${h.backends} up`];
  if (h.drained) parts.push(`${h.drained} drained`);
  if (h.failOpen) parts.push('FAIL OPEN');
  return parts.join(', ');
}

function backendHealth(b: PoolBackendStats, failOpen: boolean | null): string {
  const state = b.health === 'down' && failOpen ? 'down (fail open)' : b.health;
  if (b.weight === 0) return b.health === 'unknown' ? 'drained' : `${state}, drained`;
  return b.health === 'unknown' ? NONE : state;
}

function header(s: StatsSnapshot, rates: StatsRates | null): string[] {
  const sample = [`balancer ${s.balancer} (${s.interface})`, `sampled ${formatUtc(s.sampledAt)} (balancer clock)`];
  if (s.listingMs !== undefined) sample.push(`counters read in ${s.listingMs} ms`);
  if (rates) sample.push(`rates over ${rates.intervalSec.toFixed(1)} s`);
  const runtime = s.runtime
    ? `runtime: pid ${s.runtime.pid}, up ${formatAge(s.sampledAt - s.runtime.startedAt)}, state written ${formatAge(s.sampledAt - s.runtime.updatedAt)} ago` +
      (s.runtime.stale ? ' (STALE: is the runtime running?)' : '')
    : 'runtime: no state file (no health checks run: health unknown)';
  return [sample.join(' · '), runtime, 'Packets and bytes are client→backend only: the replies of a DSR balancer bypass it.'];
}

function vipTable(s: StatsSnapshot, rates: StatsRates | null): string[] {
  const shared = new Set(s.pools.filter((p) => p.vips.length > 1).map((p) => p.id));
  const head = ['VIP', 'ADDRESS', 'MODE', 'ALGORITHM', 'POOL', 'PACKETS', ...(rates ? ['PKT/S'] : []), 'BYTES', ...(rates ? ['BYTES/S'] : [])];
  head.push('NEW FLOWS', ...(rates ? ['NEW/S'] : []), 'ACTIVE', 'HEALTH');
  const rows = s.vips.map((v) => {
    const r = rates?.vips.get(v.name);
    const mark = shared.has(v.pool) ? '*' : '';
    return [
      v.name,
      vipAddress(v),
      v.mode,
      v.algorithm,
      `${v.pool}${mark}`,
      count(v.packets),
      ...(rates ? [rate(r?.packetsPerSec)] : []),
      bytes(v.bytes),
      ...(rates ? [byteRate(r?.bytesPerSec)] : []),
      `${count(v.newFlows)}${v.newFlows === null ? '' : mark}`,
      ...(rates ? [`${rate(r?.newFlowsPerSec)}${r?.newFlowsPerSec == null ? '' : mark}`] : []),
      `${active(v.active, v.activeSource)}${v.active === null ? '' : mark}`,
      vipHealth(v),
    ];
  });
  return renderColumns([head, ...rows]);
}

function poolTables(s: StatsSnapshot, rates: StatsRates | null): string[] {
  const lines: string[] = [];
  for (const pool of s.pools) {
    const title = [`pool ${pool.id}`, pool.algorithm, `${pool.mode}/${pool.protocol}`, `VIP${pool.vips.length > 1 ? 's' : ''}: ${pool.vips.join(', ')}`];
    if (pool.failOpen) title.push('FAIL OPEN: every backend is down, all of them get new flows');
    if (pool.changedAt !== undefined) title.push(`slots changed ${formatAge(s.sampledAt - pool.changedAt)} ago`);
    const head = [
      'BACKEND',
      'ADDRESS',
      'WEIGHT',
      'NEW FLOWS',
      ...(rates ? ['NEW/S'] : []),
      'ENDED',
      ...(rates ? ['ENDED/S'] : []),
      'ACTIVE',
      'HEALTH',
      'SINCE',
    ];
    const rows = pool.backends.map((b) => {
      const r = rates?.pools.get(pool.id)?.get(b.address);
      return [
        b.name,
        b.address,
        String(b.weight),
        count(b.newFlows),
        ...(rates ? [rate(r?.newFlowsPerSec)] : []),
        count(b.endedFlows),
        ...(rates ? [rate(r?.endedFlowsPerSec)] : []),
        active(b.active, b.activeSource),
        backendHealth(b, pool.failOpen),
        b.healthSince === undefined ? NONE : formatAge(s.sampledAt - b.healthSince) + (b.lastError ? ` (${b.lastError})` : ''),
      ];
    });
    lines.push('', title.join(' · '), ...renderColumns([head, ...rows], '  '));
  }
  return lines;
}

function backendTable(s: StatsSnapshot, rates: StatsRates | null): string[] {
  const head = ['BACKEND', 'ADDRESS', 'PACKETS', ...(rates ? ['PKT/S'] : []), 'BYTES', ...(rates ? ['BYTES/S'] : [])];
  const rows = s.backends.map((b) => {
    const r = rates?.backends.get(b.address);
    return [
      b.names.join(','),
      b.address,
      count(b.packets),
      ...(rates ? [rate(r?.packetsPerSec)] : []),
      bytes(b.bytes),
      ...(rates ? [byteRate(r?.bytesPerSec)] : []),
    ];
  });
  return ['', 'all VIPs, per backend:', ...renderColumns([head, ...rows], '  ')];
}

function notes(s: StatsSnapshot): string[] {
  const lines: string[] = [];
  if (s.pools.some((p) => p.vips.length > 1))
    lines.push("* a pool shared by several VIPs (same backends, weights and algorithm): its flow figures are the pool's, for all of its VIPs.");
  const all = s.pools.flatMap((p) => p.backends);
  if (all.some((b) => b.activeSource === 'upper-bound'))
    lines.push('≤N: new − ended flows, an upper bound: flows that expired without a FIN or RST from the client still count.');
  if (s.pools.some((p) => p.protocol === 'udp' && p.backends.some((b) => b.active === null)))
    lines.push('UDP flows have no end signal (they end by timeout only): their active count shows only where the runtime estimates it.');
  if (s.missingCounters.length)
    lines.push(
      `WARNING: the balancer lacks ${s.missingCounters.length} counter(s) this spec names (${s.missingCounters.slice(0, 3).join(', ')}${s.missingCounters.length > 3 ? ', …' : ''}): ` +
        'it does not run this configuration; apply it, or give the spec it runs.',
    );
  return lines.length ? ['', ...lines] : [];
}

/** The terminal table of one balancer; with `previous` (an earlier snapshot of it), per-second rates too. */
export function renderStatsTable(snapshot: StatsSnapshot, previous?: StatsSnapshot): string {
  const rates = previous ? statsRates(snapshot, previous) : null;
  return (
    [...header(snapshot, rates), '', ...vipTable(snapshot, rates), ...poolTables(snapshot, rates), ...backendTable(snapshot, rates), ...notes(snapshot)].join(
      '\n',
    ) + '\n'
  );
}
