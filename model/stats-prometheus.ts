import type { StatsSnapshot } from './stats';

/**
 * The statistics in Prometheus' text format, for node_exporter's textfile collector. Labels follow node_exporter's
 * IPVS collector (`local_address`, `local_port`, `remote_address`, `proto`) plus `vip`, `pool` and `backend`.
 *
 * Flow figures belong to slot pools, not VIPs: VIPs with the same backends, weights and algorithm share one pool and
 * its counters. So they are exported once per (pool, backend), and `tula_dsr_vip_info` maps each VIP to its pool for
 * joins (`… * on(pool) group_left(vip) tula_dsr_vip_info{vip="web"}`); summing a joined figure over VIPs would count a
 * pool once per VIP. A pool's VIPs may listen on different ports, so pool series carry no port: in DSR a backend serves on the
 * VIP's port, which is the VIP's `local_port`.
 */

/** A rendered label set, `{a="1",b="2"}`: built once per VIP, pool or backend and shared by its series. */
type Labels = string;

interface Family {
  readonly name: string;
  readonly type: 'counter' | 'gauge';
  readonly help: string;
  readonly samples: { readonly labels: Labels; readonly value: number }[];
}

const CLIENT_ONLY = 'client to backend only: replies bypass a DSR balancer, which never sees them';

function escapeLabel(value: string): string {
  return /[\\\n"]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : value;
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function labels(values: Readonly<Record<string, string>>): Labels {
  let out = '';
  for (const key in values) out += `${out ? ',' : '{'}${key}="${escapeLabel(values[key])}"`;
  return out && `${out}}`;
}

/** The same label set with more labels after it. */
const extend = (base: Labels, more: Readonly<Record<string, string>>): Labels => `${base.slice(0, -1)},${labels(more).slice(1)}`;

function renderFamily(f: Family): string[] {
  if (f.samples.length === 0) return [];
  return [`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`, ...f.samples.map((s) => `${f.name}${s.labels} ${s.value}`)];
}

const proto = (protocol: string) => protocol.toUpperCase();
const present = <T extends { value: number | null }>(s: T): s is T & { value: number } => s.value !== null;

/** node_exporter textfile content (text format 0.0.4) for one balancer's snapshot. */
export function renderPrometheus(s: StatsSnapshot): string {
  // 10,000 VIPs make 30,000 series: each VIP's label set is rendered once
  const vipLabels = s.vips.map((v) => labels({ vip: v.name, pool: v.pool, local_address: v.address, local_port: String(v.port), proto: proto(v.protocol) }));
  const backendLabels = new Map(s.backends.map((b) => [b.address, labels({ backend: b.names.join(','), remote_address: b.address })]));
  const poolBackends = s.pools.flatMap((p) =>
    p.backends.map((b) => ({ pool: p, backend: b, labels: labels({ pool: p.id, backend: b.name, remote_address: b.address, proto: proto(p.protocol) }) })),
  );
  const families: Family[] = [
    {
      name: 'tula_dsr_vip_info',
      type: 'gauge',
      help: 'A VIP of this balancer (always 1), with the slot pool whose backends and flow counters it shares.',
      samples: s.vips.map((v, i) => ({ labels: extend(vipLabels[i], { mode: v.mode, algorithm: v.algorithm }), value: 1 })),
    },
    {
      name: 'tula_dsr_vip_packets_total',
      type: 'counter',
      help: `Packets of the VIP the balancer forwarded to its backends (${CLIENT_ONLY}).`,
      samples: s.vips.map((v, i) => ({ labels: vipLabels[i], value: v.packets })).filter(present),
    },
    {
      name: 'tula_dsr_vip_bytes_total',
      type: 'counter',
      help: `Bytes of the VIP the balancer forwarded to its backends (${CLIENT_ONLY}).`,
      samples: s.vips.map((v, i) => ({ labels: vipLabels[i], value: v.bytes })).filter(present),
    },
    {
      name: 'tula_dsr_backend_packets_total',
      type: 'counter',
      help: `Packets the balancer forwarded to the backend, for every VIP (${CLIENT_ONLY}).`,
      samples: s.backends.map((b) => ({ labels: backendLabels.get(b.address)!, value: b.packets })).filter(present),
    },
    {
      name: 'tula_dsr_backend_bytes_total',
      type: 'counter',
      help: `Bytes the balancer forwarded to the backend, for every VIP (${CLIENT_ONLY}).`,
      samples: s.backends.map((b) => ({ labels: backendLabels.get(b.address)!, value: b.bytes })).filter(present),
    },
    {
      name: 'tula_dsr_pool_backend_connections_total',
      type: 'counter',
      help: "New flows (connections) the pool scheduled to the backend, for all of the pool's VIPs.",
      samples: poolBackends.map((x) => ({ labels: x.labels, value: x.backend.newFlows })).filter(present),
    },
    {
      name: 'tula_dsr_pool_backend_connections_ended_total',
      type: 'counter',
      help: "Flows of the pool on the backend that the client ended (FIN or RST), for all of the pool's VIPs; UDP flows only expire.",
      samples: poolBackends.map((x) => ({ labels: x.labels, value: x.backend.endedFlows })).filter(present),
    },
    {
      name: 'tula_dsr_pool_backend_connections_active',
      type: 'gauge',
      help:
        'Active connections of the pool on the backend, inferred from the client side only: estimate="runtime" is the runtime estimate ' +
        '(new - ended - expired); estimate="upper_bound" is new - ended, which still counts flows that expired without a FIN or RST.',
      samples: poolBackends
        .map((x) => ({ labels: extend(x.labels, { estimate: x.backend.activeSource === 'runtime' ? 'runtime' : 'upper_bound' }), value: x.backend.active }))
        .filter(present),
    },
    {
      name: 'tula_dsr_pool_backend_weight',
      type: 'gauge',
      help: 'Weight of the backend in the pool (0: drained, no new flows).',
      samples: poolBackends.map((x) => ({ labels: x.labels, value: x.backend.weight })),
    },
    {
      name: 'tula_dsr_pool_backend_up',
      type: 'gauge',
      help: 'Health of the backend in the pool (1 up, 0 down: no new flows unless the pool fails open); only for checked backends.',
      samples: poolBackends
        .filter((x) => x.backend.health === 'up' || x.backend.health === 'down')
        .map((x) => ({ labels: x.labels, value: x.backend.health === 'up' ? 1 : 0 })),
    },
    {
      name: 'tula_dsr_pool_fail_open',
      type: 'gauge',
      help: 'Every backend of the pool failed its check and the pool sends new flows to all of them (1), or not (0).',
      samples: s.pools
        .map((p) => ({ labels: labels({ pool: p.id, proto: proto(p.protocol) }), value: p.failOpen === null ? null : p.failOpen ? 1 : 0 }))
        .filter(present),
    },
    {
      name: 'tula_dsr_sample_timestamp_seconds',
      type: 'gauge',
      help: "When the balancer's counters were read (Unix time, the balancer's clock).",
      samples: [{ labels: '', value: s.sampledAt }],
    },
  ];
  return families.flatMap(renderFamily).join('\n') + '\n';
}
