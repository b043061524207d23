import { hex32, mayBeIpv6, parseIpAddress } from '../address';
import { LEAST_CONNECTIONS } from '../fields';
import { vipBackendChecks } from '../probe-targets';
import { DEFAULT_MAGLEV_SIZE, fnv1a32, maglevTable, slotCount, smoothWeightedSequence } from '../scheduling';
import type { BackendSpec, VipSpec } from '../spec';

/**
 * Slot pools. VIPs that would compute the same slot table (same mode, protocol, algorithm, flow timeout and the
 * same backends with the same weights and the same health checks) share one: its slots, its live backends and its scheduler dispatch are
 * stored once, under the pool's id, and each VIP only points at its pool. So the packet path still does O(1)
 * lookups, ten thousand VIPs over four backends keep one small slot table instead of ten thousand, and a change that
 * concerns a pool (a weight, a backend's health) rewrites a handful of elements whatever the number of VIPs.
 */
export interface Pool {
  /** 32-bit id, the `meta priority` (a classid) the packet path carries from the VIP lookup to the slot lookup. */
  readonly id: number;
  /** What makes two VIPs share a pool. */
  readonly key: string;
  readonly mode: VipSpec['mode'];
  readonly protocol: VipSpec['protocol'];
  /** The VIPs' address family: IPv4 and IPv6 VIPs have maps and scheduler chains of their own. */
  readonly family: 4 | 6;
  /** All-port ('*') VIPs count in other maps than single-port ones, so they never share a pool with them. */
  readonly any: boolean;
  readonly algorithm: VipSpec['algorithm'];
  readonly hashTableSize?: number;
  readonly flowTimeoutSec: number;
  readonly backends: readonly BackendSpec[];
  /** The VIPs that use it, by name. */
  readonly vips: readonly string[];
  /**
   * The balancer runtime rewrites its slots (least connections; failed health checks): its slot count then stays
   * fixed (see managedSlotCount), so that the runtime only ever changes slot and live elements, never a scheduler
   * chain, and the split stays within one slot of the weights whatever backends it leaves out.
   */
  readonly managed: boolean;
}

/**
 * Which backends of a pool take new flows, and with which weight in its slot table. By default: those with a
 * weight, with that weight. The balancer runtime also leaves out backends whose health check failed, and for least
 * connections gives each backend the weight that evens out its active connections.
 */
export interface PoolPolicy {
  readonly takes: (backend: BackendSpec, pool: Pool) => boolean;
  /** The slot weight for a backend that takes new flows; undefined: its configured weight. */
  readonly weight?: (backend: BackendSpec, pool: Pool) => number | undefined;
}

/** A VIP's address family (validation keeps its backends in it). */
export const familyOf = (ip: string): 4 | 6 => (mayBeIpv6(ip) && parseIpAddress(ip)?.family === 6 ? 6 : 4);

/** What makes two VIPs share a pool, as JSON; `weights: false` leaves the weights out (a pool's identity, see groupPools). */
function poolKey(vip: VipSpec, weights = true): string {
  const checks = vipBackendChecks(vip);
  // keys in a fixed order: plain JSON is as stable as stableJson here, and several times faster on ten thousand VIPs
  return JSON.stringify({
    // absent for IPv4, so that the keys (and pools) of configurations from before IPv6 stay as they were
    family: familyOf(vip.ip) === 6 ? 6 : undefined,
    mode: vip.mode,
    protocol: vip.protocol,
    any: vip.port === '*',
    algorithm: vip.algorithm,
    hashTableSize: vip.algorithm === 'consistent-hash' ? (vip.hashTableSize ?? DEFAULT_MAGLEV_SIZE) : undefined,
    flowTimeoutSec: vip.flowTimeoutSec,
    // order matters: weighted round robin interleaves backends in the order they were added; the runtime rewrites a
    // pool when a backend's check changes state, so backends checked differently (another port, path, …) cannot share
    backends: vip.backends.map((b, i) => ({ name: b.name, ip: b.ip, mac: b.mac, weight: weights ? b.weight : undefined, check: checks[i]?.key })),
  });
}

/** 0 means "no pool" (the register's value before the VIP lookup) and 0xffffffff is the classid `root`. */
const usableId = (id: number) => id !== 0 && id !== 0xffffffff;

/**
 * The pools of a balancer, in id order. A pool's id depends on what it is, not on which VIPs use it, so that a VIP
 * added, removed or moved to a pool of its own changes that VIP's element only: it is a hash of the pool's content
 * without its weights. Pools that differ only by weights therefore want the same id: the one with the most VIPs (then
 * the first VIP name) has it, the others take a hash of their whole content. So a weight change keeps a shared
 * pool's id, its counters and the slots that did not move (a plan shows the few slot lines that changed), and one
 * VIP given weights of its own leaves the shared pool where it is. (A true collision moves the later pool to the
 * next free id.)
 */
export function groupPools(vips: readonly VipSpec[]): Pool[] {
  // one run groups the same VIPs several times (the table, whether a runtime is needed, the facts it asks for):
  // ten thousand VIPs take a few hundred milliseconds each time
  let pools = poolsOf.get(vips);
  if (!pools) poolsOf.set(vips, (pools = computePools(vips)));
  return pools;
}

const poolsOf = new WeakMap<readonly VipSpec[], Pool[]>();

/**
 * A node of the tree that groups VIPs by what poolKey writes, value by value: ten thousand VIPs are looked up in a few
 * small maps each instead of each writing (and hashing) a key of a few hundred characters. Two VIPs reach the same
 * leaf exactly when their poolKeys are equal: numbers JSON writes as null are null here too, and a VIP with a value
 * that is not a string, number or boolean (none is, once validated) is grouped by its poolKey itself.
 */
interface KeyNode {
  readonly next: Map<unknown, KeyNode>;
  group?: { readonly vip: VipSpec; readonly names: string[] };
}

const keyNode = (): KeyNode => ({ next: new Map() });

/** A walk down the tree, value by value (a class, not closures: one object per VIP). */
class KeyWalk {
  plain = true;
  constructor(public node: KeyNode) {}
  step(value: unknown): void {
    if (value !== null && typeof value === 'object') this.plain = false;
    const v = typeof value === 'number' && !Number.isFinite(value) ? null : value;
    let next = this.node.next.get(v);
    if (!next) this.node.next.set(v, (next = keyNode()));
    this.node = next;
  }
}

function groupOf(root: KeyNode, vip: VipSpec): KeyNode {
  const walk = new KeyWalk(root);
  const checks = vipBackendChecks(vip);
  walk.step(familyOf(vip.ip) === 6);
  walk.step(vip.mode);
  walk.step(vip.protocol);
  walk.step(vip.port === '*');
  walk.step(vip.algorithm);
  walk.step(vip.algorithm === 'consistent-hash' ? (vip.hashTableSize ?? DEFAULT_MAGLEV_SIZE) : undefined);
  walk.step(vip.flowTimeoutSec);
  const { backends } = vip;
  walk.step(backends.length);
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i];
    walk.step(b.name);
    walk.step(b.ip);
    walk.step(b.mac);
    walk.step(b.weight);
    walk.step(checks[i]?.key);
  }
  if (walk.plain) return walk.node;
  const byKey = new KeyWalk(root);
  byKey.step(poolKey(vip));
  return byKey.node;
}

function computePools(vips: readonly VipSpec[]): Pool[] {
  const root = keyNode();
  const groups: { vip: VipSpec; names: string[] }[] = [];
  for (const vip of vips) {
    const node = groupOf(root, vip);
    if (node.group) node.group.names.push(vip.name);
    else groups.push((node.group = { vip, names: [vip.name] }));
  }
  // each group's names in order, once (its first name breaks ties between pools of the same size)
  const sorted = new Map(groups.map((g) => [g, [...g.names].sort()]));
  const firstName = (g: (typeof groups)[number]) => sorted.get(g)![0];
  const ordered = groups.sort((a, b) => b.names.length - a.names.length || (firstName(a) < firstName(b) ? -1 : 1));
  const ids = new Map<(typeof groups)[number], number>();
  const taken = new Set<number>();
  for (const group of ordered) {
    const id = fnv1a32(`tula-dsr pool/${poolKey(group.vip, false)}`);
    if (!usableId(id) || taken.has(id)) continue;
    ids.set(group, id);
    taken.add(id);
  }
  for (const group of ordered) {
    if (ids.has(group)) continue;
    let id = fnv1a32(`tula-dsr pool/${poolKey(group.vip)}`);
    while (!usableId(id) || taken.has(id)) id = (id + 1) >>> 0;
    ids.set(group, id);
    taken.add(id);
  }
  const pools: Pool[] = ordered.map((group) => {
    const { vip } = group;
    return {
      id: ids.get(group)!,
      key: poolKey(vip),
      mode: vip.mode,
      protocol: vip.protocol,
      family: familyOf(vip.ip),
      any: vip.port === '*',
      algorithm: vip.algorithm,
      hashTableSize: vip.algorithm === 'consistent-hash' ? (vip.hashTableSize ?? DEFAULT_MAGLEV_SIZE) : undefined,
      flowTimeoutSec: vip.flowTimeoutSec,
      backends: vip.backends,
      vips: sorted.get(group)!,
      managed: isManagedVip(vip),
    };
  });
  return pools.sort((a, b) => a.id - b.id);
}

/**
 * Whether the pool of this VIP is managed: the runtime rewrites a pool whose backends it checks or weighs by their
 * connections. The same for every VIP of a pool (the algorithm and the checks are part of its key), so a balancer has
 * a managed pool exactly when one of its VIPs is managed.
 */
export function isManagedVip(vip: VipSpec): boolean {
  return LEAST_CONNECTIONS.includes(vip.algorithm) || vipBackendChecks(vip).some((c) => c !== null);
}

/** A pool id from a classid as nft writes it (`major:minor` in hex), the inverse of poolClassid. */
export function poolIdOfClassid(classid: string): number {
  const [major, minor] = classid.split(':');
  return ((parseInt(major, 16) << 16) | parseInt(minor, 16)) >>> 0;
}

/** A pool id as nft writes a classid: `major:minor` in hex. */
export function poolClassid(id: number): string {
  return `${(id >>> 16).toString(16)}:${(id & 0xffff).toString(16)}`;
}

/** Eight hex digits, for names and review keys. */
export const poolName = (id: number) => hex32(id);

/** The weight a backend has in its pool's table: 1 each for round robin and least connections, else its own. */
export function configuredWeight(b: BackendSpec, pool: Pool): number {
  if (b.weight <= 0) return 0;
  return pool.algorithm === 'round-robin' || pool.algorithm === 'least-connections' ? 1 : b.weight;
}

export const DEFAULT_POLICY: PoolPolicy = { takes: (b) => b.weight > 0 };

function weightsOf(pool: Pool, policy: PoolPolicy): { name: string; weight: number }[] {
  return pool.backends.map((b) => ({ name: b.name, weight: policy.takes(b, pool) ? (policy.weight?.(b, pool) ?? configuredWeight(b, pool)) : 0 }));
}

/** A managed pool's fixed slot count (see slotCount): it stays when the runtime leaves backends out. */
export function managedSlotCount(pool: Pool): number {
  return slotCount(pool.algorithm, pool.backends, pool.hashTableSize);
}

/** Backend names in slot order: the slot table the pool's scheduler steps through or hashes into. */
export function poolSequence(pool: Pool, policy: PoolPolicy = DEFAULT_POLICY): string[] {
  const weighted = weightsOf(pool, policy);
  if (pool.algorithm === 'consistent-hash') return maglevTable(weighted, pool.hashTableSize);
  return smoothWeightedSequence(weighted, pool.managed ? managedSlotCount(pool) : undefined);
}
