import { compareAddresses, hex32, parseIpv4 } from '../address';
import { fnv1a32 } from '../scheduling';
import type { BackendSpec, BalancerSpec, VipSpec } from '../spec';
import { nftVipKey } from '../vip-key';
import { NftChain, NftDefine, NftElement, NftMap, NftTable } from './objects';
import { staticMapSize } from './render';
import { DEFAULT_POLICY, Pool, PoolPolicy, groupPools, poolClassid, poolName, poolSequence } from './pools';

export const BALANCER_TABLE = 'tula_dsr';
/**
 * Capacity of each flow map. nft's default (65,535) is far too small for a balancer; entries cost memory only
 * while they exist, and they expire after the VIP's flowTimeoutSec of idleness.
 */
export const FLOW_MAP_SIZE = 1048576;

/**
 * Facts the balancer learns at apply time. Missing values render as commented placeholders, which is what the
 * plan shows; the agent renders again with every value resolved.
 */
export interface BalancerFacts {
  /** MAC of the balancer's interface, when the spec does not give one. */
  readonly interfaceMac?: string;
  /** Backend IP → MAC, resolved on the balancer (L2 backends without an explicit mac). */
  readonly backendMacs?: Readonly<Record<string, string>>;
}

const backendIds = new Map<string, string>();

/** Stable per-backend identity: the IPv4 address as an integer (also the `meta mark` that selects an L3 tunnel). */
export function backendId(ip: string): string {
  let id = backendIds.get(ip);
  if (id === undefined) {
    const value = parseIpv4(ip);
    if (value === null) throw new Error(`backendId: ${ip} is not an IPv4 address`);
    id = hex32(value);
    // renders look up the same few backends once per VIP: parse each address once
    if (backendIds.size > 65536) backendIds.clear();
    backendIds.set(ip, id);
  }
  return id;
}

/** The balancer-side IPIP device for one backend: `tula` + 8 hex digits = 12 characters (IFNAMSIZ allows 15). */
export function tunnelName(backendIp: string): string {
  return `tula${backendId(backendIp)}`;
}

const macVar = (ip: string) => `mac_${backendId(ip)}`;
const FLOW_KEY = 'ip saddr . th sport . ip daddr . th dport';

interface Shape {
  readonly chain: string;
  readonly pool: Pool;
  readonly modulus: number;
  readonly algorithm: 'rr' | 'sh' | 'ch';
}

function shapeOf(pool: Pool, modulus: number): Shape {
  const algorithm = pool.algorithm === 'source-hash' ? 'sh' : pool.algorithm === 'consistent-hash' ? 'ch' : 'rr';
  const chain = `${pool.mode}_${pool.protocol}_${pool.any ? 'any' : 'port'}_${algorithm}${modulus}_t${pool.flowTimeoutSec}${managedSuffix(pool)}`;
  return { chain, pool, modulus, algorithm };
}

/** The key that identifies a VIP on the packet path; the map names differ for single-port and all-port VIPs. */
function vipKeyExpr(any: boolean): string {
  return any ? 'ip daddr . meta l4proto' : 'ip daddr . meta l4proto . th dport';
}

/** The maps a scheduler chain reads and writes, by role. */
interface SchedulerMaps {
  /** Open flows: 4-tuple → backend. */
  readonly flows: string;
  /** Flows the client ended (FIN or RST seen): kept only so that its last packets reach the same backend. */
  readonly closing?: string;
  /** (pool, slot) → backend. */
  readonly slots: string;
  /** The (pool, backend) pairs that take new flows. */
  readonly live: string;
  /** Sets of (pool, backend) whose elements count new flows, and flows the client ended. */
  readonly newCounter: string;
  readonly endedCounter: string;
}

/**
 * The rules of a scheduler chain. The VIP's pool id is in `meta priority` (set by the ingress dispatch); the backend
 * goes into `ether daddr` (L2) or `meta mark` (L3, which picks the tunnel).
 */
function schedulerRules(shape: Shape, maps: SchedulerMaps, out: string, valueExpr: string): string[] {
  const { pool, modulus } = shape;
  const { flows, closing, slots, live } = maps;
  const timeout = `timeout ${pool.flowTimeoutSec}s`;
  const remember = `update @${flows} { ${FLOW_KEY} ${timeout} : ${valueExpr} }`;
  const pick = (chooser: string) => `${valueExpr} set meta priority . ${chooser} map @${slots}`;
  const countNew = `meta priority . ${valueExpr} @${maps.newCounter}`;
  // The seed depends on the kind of scheduler only, so that a weight change (a new modulus) keeps it.
  const seed = `0x${hex32(fnv1a32(`tula-dsr/${pool.mode}_${pool.protocol}_${shape.algorithm}`))}`;
  const rules = [`counter name ${vipKeyExpr(pool.any)} map @vip_counter_${pool.any ? 'any' : 'port'}`];
  const tcp = pool.protocol === 'tcp';
  const newFlow = tcp ? 'tcp flags & (syn|ack) == syn ' : '';
  if (tcp && closing) {
    // The client ends its connection (FIN or RST): the flow leaves the open flows for the closing ones, so that its
    // last packets (the ACK after a FIN, retransmissions) still reach its backend, while a later SYN on the same
    // 4-tuple is a new connection and is scheduled afresh, as IPVS does from the client's packets alone.
    rules.push(
      `tcp flags & (fin|rst) != 0 tcp flags & syn == 0 ${valueExpr} set ${FLOW_KEY} map @${flows} ` +
        `update @${closing} { ${FLOW_KEY} ${timeout} : ${valueExpr} } delete @${flows} { ${FLOW_KEY} : ${valueExpr} } ` +
        `meta priority . ${valueExpr} @${maps.endedCounter} ${out}`,
    );
  }
  // Open flows next. A SYN that finds an entry keeps its backend (a retransmitted SYN) only while that backend still
  // takes new flows, so that a new connection on a 4-tuple whose end the balancer never saw cannot reach a drained
  // or removed backend. Otherwise the stale entry goes, and the SYN is scheduled afresh.
  rules.push(`${tcp ? 'tcp flags & (syn|ack) != syn ' : ''}${valueExpr} set ${FLOW_KEY} map @${flows} ${remember} ${out}`);
  if (tcp && closing)
    rules.push(`tcp flags & (syn|ack) != syn ${valueExpr} set ${FLOW_KEY} map @${closing} update @${closing} { ${FLOW_KEY} ${timeout} : ${valueExpr} } ${out}`);
  if (tcp) {
    rules.push(
      `${newFlow}${valueExpr} set ${FLOW_KEY} map @${flows} meta priority . ${valueExpr} @${live} ${out}`,
      `${newFlow}delete @${flows} { ${FLOW_KEY} : ${valueExpr} }`,
    );
  }
  // A new connection also retires what a closed one on the same 4-tuple left: `update` never replaces the value of an
  // element that exists, so a stale closing entry would send the new connection's last packets to the old backend.
  if (tcp && closing) rules.push(`${newFlow}${valueExpr} set ${FLOW_KEY} map @${closing} delete @${closing} { ${FLOW_KEY} : ${valueExpr} }`);
  if (modulus === 0) return rules;
  const hash = shape.algorithm === 'sh' ? `jhash ip saddr . ip daddr mod ${modulus} seed ${seed}` : `jhash ${FLOW_KEY} mod ${modulus} seed ${seed}`;
  const chooser = shape.algorithm === 'rr' ? `numgen inc mod ${modulus}` : hash;
  rules.push(`${newFlow}${pick(chooser)} ${remember} ${countNew} ${out}`);
  // The kernel may refuse to record a flow whose 4-tuple was ended and reused moments before (its old entry waits
  // for the once-a-second garbage collection). Such a first packet then goes where the pinned-seed hash sends it,
  // which is where every later packet of the flow goes too until one of them records it: the flow works, it is
  // just not placed by round robin. Never the balancer's own stack, which owns the VIP and would answer a reset.
  if (tcp || shape.algorithm !== 'rr') rules.push(`${newFlow}${pick(hash)} ${countNew} ${out}`);
  if (tcp) {
    // A mid-stream packet without a flow entry (entry expired, balancer restarted): the same pinned-seed hash,
    // recorded when the kernel takes it, forwarded either way.
    rules.push(`${pick(hash)} ${remember} ${out}`, `${pick(hash)} ${out}`);
  }
  return rules;
}

/** Managed pools' own maps and chains end in `_rt` (see buildBalancerTable). */
export const MANAGED_SUFFIX = '_rt';
const managedSuffix = (pool: Pool) => (pool.managed ? MANAGED_SUFFIX : '');

function slotValue(mode: VipSpec['mode'], backend: BackendSpec): string {
  return mode === 'l2' ? `$${macVar(backend.ip)}` : `0x${backendId(backend.ip)}`;
}

function byName<T extends { name: string }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const sortedVips = new WeakMap<readonly VipSpec[], VipSpec[]>();

/** The VIPs in name order, the same array for the same spec (so that groupPools groups them once). */
function vipsByName(vips: readonly VipSpec[]): VipSpec[] {
  let sorted = sortedVips.get(vips);
  if (!sorted) sortedVips.set(vips, (sorted = byName(vips)));
  return sorted;
}

export interface BuildOptions {
  /** The spec's pools (groupPools), from a caller that builds the same spec again and again. */
  readonly pools?: readonly Pool[];
  /**
   * Only what the managed pools own (their `_rt` maps and the definitions they use): the runtime's pool sync, which
   * must not pay for ten thousand VIPs' maps to move one pool's slots.
   */
  readonly managedOnly?: boolean;
}

type MapDraft = { type: string; typeof?: boolean; set?: boolean; counter?: boolean; dynamic?: { timeoutSec: number; size: number }; elements: NftElement[] };

/**
 * Builds the balancer's single table: one ingress base chain on the balancer interface looks the VIP up once, on
 * (daddr, protocol, dport) or on (daddr, protocol) for all-port VIPs, which gives the VIP's slot pool (see pools.ts),
 * and the pool's dispatch jumps to a scheduler chain shared by all pools of the same shape. Per VIP, per pool and
 * per backend state lives in maps, so the packet path does O(1) lookups whatever the number of VIPs.
 *
 * `policy` decides which backends of a pool take new flows and with which slot weights (default: those with a
 * weight, with that weight); the balancer runtime passes its own for the pools it manages. Managed pools keep their
 * slots and live backends in maps of their own (`…_rt`): the runtime rewrites them, and drift checks leave them out.
 */
export function buildBalancerTable(
  spec: BalancerSpec,
  facts: BalancerFacts = {},
  header: readonly string[] = [],
  policy: PoolPolicy = DEFAULT_POLICY,
  options: BuildOptions = {},
): NftTable {
  const managedOnly = options.managedOnly ?? false;
  const vips = managedOnly ? [] : vipsByName(spec.vips);
  const defines: NftDefine[] = [];
  const counters = new Set<string>();
  const maps = new Map<string, MapDraft>();
  const chains = new Map<string, NftChain>();
  const mapOf = (name: string, draft: Omit<MapDraft, 'elements'>) => {
    if (!maps.has(name)) maps.set(name, { ...draft, elements: [] });
    return maps.get(name)!;
  };
  const l2Backends = new Map<string, BackendSpec>();
  const l3Backends = new Map<string, BackendSpec>();

  const pools = options.pools ?? groupPools(vipsByName(spec.vips));
  const poolOf = new Map(pools.flatMap((p) => p.vips.map((name) => [name, p] as const)));
  for (const vip of vips) {
    const kind = vip.port === '*' ? 'any' : 'port';
    const keyType = vip.port === '*' ? 'ipv4_addr . inet_proto' : 'ipv4_addr . inet_proto . inet_service';
    const key = nftVipKey(vip);
    const own = (text: string): NftElement => ({ text, vip: vip.name });
    const vipCounter = `vip_${vip.name}`;
    counters.add(vipCounter);
    mapOf(`vip_pool_${kind}`, { type: `${keyType} : classid` }).elements.push(own(`${key} : ${poolClassid(poolOf.get(vip.name)!.id)}`));
    mapOf(`vip_counter_${kind}`, { type: `${keyType} : counter` }).elements.push(own(`${key} : ${vipCounter}`));
  }

  for (const pool of pools) {
    if (managedOnly && !pool.managed) continue;
    const sequence = poolSequence(pool, policy);
    const shape = shapeOf(pool, sequence.length);
    const classid = poolClassid(pool.id);
    const own = (text: string): NftElement => ({ text, pool: poolName(pool.id) });
    const l2 = pool.mode === 'l2';
    const valueType = l2 ? 'ether_addr' : 'mark';
    const valueExpr = l2 ? 'ether daddr' : 'meta mark';
    const roles: SchedulerMaps = {
      flows: `flows_${pool.mode}_${pool.protocol}`,
      closing: pool.protocol === 'tcp' ? `closing_${pool.mode}_tcp` : undefined,
      slots: `slots_${pool.mode}${managedSuffix(pool)}`,
      live: `live_${pool.mode}${managedSuffix(pool)}`,
      newCounter: `pool_new_${pool.mode}`,
      endedCounter: `pool_ended_${pool.mode}`,
    };
    for (const dynamic of [roles.flows, roles.closing]) {
      if (dynamic)
        mapOf(dynamic, { type: `ipv4_addr . inet_service . ipv4_addr . inet_service : ${valueType}`, dynamic: { timeoutSec: 3600, size: FLOW_MAP_SIZE } });
    }
    mapOf('pool_chain', { type: 'classid : verdict' }).elements.push(own(`${classid} : goto ${shape.chain}`));
    // the typeof's modulus is only there to give the key its type: each rule uses its pool's own modulus
    const slotMap = mapOf(roles.slots, { type: `meta priority . numgen inc mod 2 : ${valueExpr}`, typeof: true });
    const values = new Map(pool.backends.map((b) => [b.name, slotValue(pool.mode, b)]));
    sequence.forEach((name, index) => slotMap.elements.push(own(`${classid} . ${index} : ${values.get(name)}`)));
    for (const backend of pool.backends) (l2 ? l2Backends : l3Backends).set(backend.ip, backend);
    // Per (pool, backend): new flows (scheduled) and flows the client ended (FIN or RST), counted by the set
    // elements themselves; the runtime's least connections and the statistics infer active connections from them
    // (new − ended − expired). Element counters, not named ones: nft 1.0.6 reads a named counter only after loading
    // every set element of the ruleset (seconds with 100,000 flows), while listing one set reads that set alone.
    for (const name of managedOnly ? [] : [roles.newCounter, roles.endedCounter]) {
      const counterSet = mapOf(name, { type: `classid . ${valueType}`, set: true, counter: true });
      for (const b of pool.backends) counterSet.elements.push(own(`${classid} . ${values.get(b.name)}`));
    }
    if (pool.protocol === 'tcp') {
      // (pool, backend) pairs that take new flows; a set, because the verdict is the same for every element
      const liveSet = mapOf(roles.live, { type: `classid . ${valueType}`, set: true });
      // a backend least connections gives no slot for a moment still takes new flows: its SYNs keep their pin
      const live = pool.managed ? new Set(pool.backends.filter((b) => policy.takes(b, pool)).map((b) => b.name)) : new Set(sequence);
      for (const b of pool.backends) if (live.has(b.name)) liveSet.elements.push(own(`${classid} . ${values.get(b.name)}`));
    }
    if (!chains.has(shape.chain)) {
      const out = l2 ? 'goto l2_out' : 'meta mark vmap @l3_backends';
      chains.set(shape.chain, { name: shape.chain, rules: schedulerRules(shape, roles, out, valueExpr) });
    }
  }

  const orderedIps = (m: Map<string, BackendSpec>) => [...m.keys()].sort(compareAddresses);
  if (l2Backends.size) {
    const lbMac = spec.mac ?? facts.interfaceMac ?? null;
    defines.push({
      name: 'lb_mac',
      value: lbMac,
      comment: lbMac && spec.mac ? `${spec.interface}, as configured` : `MAC of ${spec.interface}, read on the balancer at apply time`,
    });
    const counterMap = mapOf('backend_counter_l2', { type: 'ether_addr : counter' });
    for (const ip of orderedIps(l2Backends)) {
      const mac = l2Backends.get(ip)!.mac ?? facts.backendMacs?.[ip] ?? null;
      defines.push({
        name: macVar(ip),
        value: mac,
        comment: mac && l2Backends.get(ip)!.mac ? `${ip}, as configured` : `MAC of ${ip}, resolved on the balancer at apply time`,
      });
      counters.add(`be_${backendId(ip)}`);
      counterMap.elements.push({ text: `$${macVar(ip)} : be_${backendId(ip)}` });
    }
    chains.set('l2_out', {
      name: 'l2_out',
      rules: [
        'counter name ether daddr map @backend_counter_l2',
        // Rewriting the source MAC keeps the switch from learning the client's MAC on the balancer's port; the pool
        // id goes, so that it cannot pick a queue of the outgoing interface (skb->priority selects pfifo bands).
        `meta priority set 0:0 ether saddr set $lb_mac fwd to "${spec.interface}"`,
      ],
    });
  }
  if (l3Backends.size) {
    const dispatch = mapOf('l3_backends', { type: 'mark : verdict' });
    for (const ip of orderedIps(l3Backends)) {
      const id = backendId(ip);
      counters.add(`be_${id}`);
      dispatch.elements.push({ text: `0x${id} : goto be_${id}` });
      chains.set(`be_${id}`, { name: `be_${id}`, rules: [`counter name be_${id} meta priority set 0:0 fwd ip to ${ip} device "${tunnelName(ip)}"`] });
    }
  }

  const ingressRules = (['port', 'any'] as const)
    .filter((kind) => maps.has(`vip_pool_${kind}`))
    .map((kind) => `meta protocol ip meta priority set ${vipKeyExpr(kind === 'any')} map @vip_pool_${kind} meta priority vmap @pool_chain`);
  const ingress: NftChain = {
    name: 'ingress',
    hook: `type filter hook ingress device "${spec.interface}" priority -300; policy accept;`,
    rules: ingressRules,
  };
  const sortedChains = [ingress, ...[...chains.values()].sort((a, b) => (a.name < b.name ? -1 : 1))];
  const sortedMaps: NftMap[] = [...maps.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([name, m]) => ({ name, ...m, ...(m.dynamic ? {} : { size: staticMapSize(m.elements.length) }) }));
  return {
    family: 'netdev',
    name: BALANCER_TABLE,
    header,
    defines,
    counters: [...counters].sort(),
    maps: sortedMaps,
    chains: sortedChains,
  };
}

/** The balancer's IPIP tunnels for L3 backends, in address order. */
export function balancerTunnels(spec: BalancerSpec): { name: string; local: string; remote: string }[] {
  const remotes = new Set(spec.vips.filter((v) => v.mode === 'l3').flatMap((v) => v.backends.map((b) => b.ip)));
  return [...remotes].sort(compareAddresses).map((remote) => ({ name: tunnelName(remote), local: spec.address!, remote }));
}
