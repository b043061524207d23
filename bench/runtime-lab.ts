/**
 * What the runtime benchmarks stand on: the L2 namespace lab with four backends (lab/l2), a balancer spec of many
 * checked VIPs over them, the whole table loaded into the balancer's namespace as a first apply loads it, the
 * runtime's configuration file, and, on request, open flows in the flow map. VIPs come from 10.214.0.0/18 (see
 * l2-dataplane.ts), outside every lab subnet; the only traffic is the runtime's probes inside the lab.
 */
import { writeFileSync } from 'node:fs';
import { BalancerFacts, BalancerSpec, StrictSpecSchemas, formatIpv4, groupPools, probeTargets, renderRuntimeConfig } from '../model';
import { execFile, ExecResult } from '../lab/exec';
import type { L2Lab } from '../lab/l2/lab';
import { enterHostArgv } from '../lab/netns';
import { parseListedElements } from '../runtime/nft';
import type { LabHost } from '../lab/topology';
import { vipAddress, vipName } from './l2-dataplane';
import { renderFirstLoad } from './nft-scale';

/** How the VIPs group into slot pools: the goal is about the first; the second shows how a sync scales with pools. */
export type PoolShape = 'one-pool' | 'many-pools';
/** VIPs per pool in the many-pools shape. */
export const VIPS_PER_POOL = 4;

export interface RuntimeSpecOptions {
  readonly vips: number;
  readonly shape: PoolShape;
  readonly algorithm: 'weighted-round-robin' | 'least-connections';
  /** As a DsrVip's `healthCheck` prop; the schema fills its defaults. */
  readonly healthCheck: Readonly<Record<string, unknown>>;
}

/**
 * Weights 1–8 for each backend, from the pool's index (3 bits per backend): with four backends 4,096 distinct
 * combinations, so each group of VIPS_PER_POOL VIPs is a pool of its own.
 */
function poolWeights(pool: number, backends: number): number[] {
  return Array.from({ length: backends }, (_, b) => ((pool >> (3 * b)) & 7) + 1);
}

/** The balancer spec, validated (defaults filled) as the agent would take it; throws if the pools are not as asked. */
export function runtimeSpec(l2: L2Lab, options: RuntimeSpecOptions): BalancerSpec {
  const backends = l2.backends;
  const vips = Array.from({ length: options.vips }, (_, i) => {
    const weights = options.shape === 'many-pools' ? poolWeights(Math.floor(i / VIPS_PER_POOL), backends.length) : undefined;
    return {
      path: `bench/vip/${vipName(i)}`,
      name: vipName(i),
      ip: vipAddress(i),
      port: 80,
      protocol: 'tcp',
      mode: 'l2',
      algorithm: options.algorithm,
      flowTimeoutSec: 300,
      healthCheck: options.healthCheck,
      backends: backends.map((b, k) => ({ path: `bench/vip/${vipName(i)}/${b.name}`, name: b.name, ip: b.ip, weight: weights?.[k] ?? 1 })),
    };
  });
  const spec = StrictSpecSchemas.BalancerSpecSchema.parse({
    kind: 'balancer',
    path: 'bench/lb',
    name: 'lb',
    ssh: { host: l2.lb.ip },
    interface: 'eth0',
    address: l2.lb.ip,
    subnet: l2.lab.subnet,
    vips,
  });
  const pools = groupPools(spec.vips);
  const expected = options.shape === 'one-pool' ? 1 : Math.ceil(options.vips / VIPS_PER_POOL);
  if (pools.length !== expected || pools.some((p) => !p.managed)) {
    throw new Error(`runtime bench: ${options.shape} gave ${pools.length} pools (${pools.filter((p) => p.managed).length} managed), not ${expected} managed`);
  }
  return spec;
}

/** The MACs the agent would resolve on the balancer: its own, and each backend's. */
export function labFacts(l2: L2Lab): Required<BalancerFacts> {
  return { interfaceMac: l2.lb.mac, backendMacs: Object.fromEntries(l2.backends.map((b) => [b.ip, b.mac])) };
}

/** Runs argv inside a lab host (its network and mount namespaces) with a deadline; throws on a non-zero exit. */
export async function hostOk(host: LabHost, argv: readonly string[], timeoutMs = 60_000): Promise<ExecResult> {
  const r = await execFile(enterHostArgv(host.anchorPid, argv), { timeoutMs });
  if (r.code !== 0) throw new Error(`on ${host.name}: ${argv.join(' ')} exited ${r.code}: ${r.stderr.trim().slice(-2000)}`);
  return r;
}

/** Writes a file into a lab host's private /tmp; returns its path as the host sees it. */
export function writeHostFile(host: LabHost, name: string, text: string): string {
  const path = `/tmp/${name}`;
  writeFileSync(host.path(path), text);
  return path;
}

/** Loads the whole table into the balancer as a first apply does (the host's old table, if any, goes first). */
export async function loadTable(l2: L2Lab, spec: BalancerSpec): Promise<void> {
  await execFile(enterHostArgv(l2.lb.anchorPid, ['nft', 'delete', 'table', 'netdev', 'tula_dsr']));
  await hostOk(l2.lb, ['nft', '-f', writeHostFile(l2.lb, 'table.nft', renderFirstLoad(spec, labFacts(l2)))]);
}

/** Writes the runtime's configuration into the balancer's /tmp, as the agent renders it; returns its path there. */
export function writeRuntimeConfig(l2: L2Lab, spec: BalancerSpec): string {
  return writeHostFile(l2.lb, 'runtime.json', renderRuntimeConfig(spec, labFacts(l2)));
}

/**
 * Fills the TCP flow map with `count` open flows (clients from 10.215.0.0/16, spread over the VIPs and backends),
 * as a busy balancer holds them; they expire with the map's timeout (an hour), long after the bench.
 */
export async function fillFlows(l2: L2Lab, spec: BalancerSpec, count: number): Promise<void> {
  const macs = l2.backends.map((b) => b.mac);
  const statements: string[] = [];
  for (let start = 0; start < count; start += 10_000) {
    const elements: string[] = [];
    for (let i = start; i < Math.min(count, start + 10_000); i++) {
      const vip = spec.vips[i % spec.vips.length];
      elements.push(`${formatIpv4(0x0ad70000 + (i >> 4))} . ${10_000 + (i & 15)} . ${vip.ip} . 80 : ${macs[i % macs.length]}`);
    }
    statements.push(`add element netdev tula_dsr flows_l2_tcp { ${elements.join(', ')} }`);
  }
  await hostOk(l2.lb, ['nft', '-f', writeHostFile(l2.lb, 'flows.nft', statements.join('\n') + '\n')]);
  const listed = parseListedElements((await hostOk(l2.lb, ['nft', '-j', 'list', 'map', 'netdev', 'tula_dsr', 'flows_l2_tcp'])).stdout).length;
  if (listed !== count) throw new Error(`runtime bench: the flow map holds ${listed} flows, not ${count}`);
}

/**
 * Makes each backend a DSR backend for the VIPs its probes are addressed to (the first VIP of each check): ARP
 * sysctls first, then the VIP on lo. The lab's servers listen on 0.0.0.0:80, so they answer a probe to the VIP.
 */
export async function prepareBackends(l2: L2Lab, spec: BalancerSpec): Promise<void> {
  const vias = [...new Set(probeTargets(spec).map((t) => t.via.ip))];
  await Promise.all(
    l2.backends.map(async (b) => {
      await hostOk(b, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2']);
      for (const ip of vias) await hostOk(b, ['ip', 'address', 'replace', `${ip}/32`, 'dev', 'lo']);
    }),
  );
}
