import { addressHex, compareAddresses, hex32, parseIpAddress } from '../address';
import { fnv1a32 } from '../scheduling';
import type { BackendSpec, BalancerSpec, VipSpec } from '../spec';
import { nftVipKey } from '../vip-key';
import { NftChain, NftDefine, NftElement, NftMap, NftTable } from './objects';
import { staticMapSize, withDefines } from './render';
import { DEFAULT_POLICY, Pool, PoolPolicy, familyOf, groupPools, poolClassid, poolName, poolSequence } from './pools';

export const BALANCER_TABLE = 'tula_dsr';
/** IPv6 L2 backends' MAC → counter map (`backend_counter_l2` holds the IPv4 ones). */
export const BACKEND_MAC_MAP6 = 'backend_counter_l2_6';
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

/**
 * Stable per-backend identity for names (counters `be_<id>`, defines `mac_<id>`): the address's bytes in hex, 8 digits
 * for IPv4 (the address as an integer, also the `meta mark` that selects an L3 tunnel) and 32 for IPv6, so two
 * backends never share a name.
 */
export function backendId(ip: string): string {
  let id = backendIds.get(ip);
  if (id === undefined) {
    const address = parseIpAddress(ip);
    if (address === null) throw new Error(`backendId: ${ip} is not an IP address`);
    id = addressHex(address);
    // renders look up the same few backends once per VIP: parse each address once
    if (backendIds.size > 65536) backendIds.clear();
    backendIds.set(ip, id);
  }
  return id;
}

/**
 * The `meta mark` values of IPv6 L3 backends: 32 bits cannot hold their addresses, so each gets a hash, in a range no
 * IPv4 backend's mark (its address) can take: 224.0.0.0/3, multicast and reserved, is refused as a backend. A hash
 * already taken on this balancer moves to the next free value, addresses taken in order.
 */
const MARK6_BASE = 0xe0000000;
const MARK6_SPAN = 0x20000000;
const markCache = new WeakMap<BalancerSpec['vips'], ReadonlyMap<string, number>>();

function ipv6Marks(spec: Pick<BalancerSpec, 'vips'>): ReadonlyMap<string, number> {
  let marks = markCache.get(spec.vips);
  if (!marks) {
    const ips = new Set(spec.vips.filter((v) => v.mode === 'l3').flatMap((v) => v.backends.map((b) => b.ip)));
    const taken = new Set<number>();
    const assigned = new Map<string, number>();
    for (const ip of [...ips].filter((x) => parseIpAddress(x)?.family === 6).sort(compareAddresses)) {
      let offset = fnv1a32(`tula-dsr mark/${ip}`) % MARK6_SPAN;
      while (taken.has(offset)) offset = (offset + 1) % MARK6_SPAN;
      taken.add(offset);
      assigned.set(ip, MARK6_BASE + offset);
    }
    markCache.set(spec.vips, (marks = assigned));
  }
  return marks;
}

/** The `meta mark` that selects an L3 backend's tunnel: its IPv4 address as an integer, or its IPv6 hash (ipv6Marks). */
export function backendMark(ip: string, spec?: Pick<BalancerSpec, 'vips'>): string {
  const address = parseIpAddress(ip);
  if (address?.family === 4) return backendId(ip);
  const mark = spec && ipv6Marks(spec).get(ip);
  if (mark === undefined) throw new Error(`backendMark: ${ip} is not an L3 backend of this balancer`);
  return hex32(mark);
}

/**
 * The balancer-side tunnel for one L3 backend: `tula` + the 8 hex digits of its mark = 12 characters (IFNAMSIZ allows
 * 15). An IPv6 backend's name depends on the balancer's other IPv6 backends (ipv6Marks), so it needs the spec.
 */
export function tunnelName(backendIp: string, spec?: Pick<BalancerSpec, 'vips'>): string {
  return `tula${backendMark(backendIp, spec)}`;
}

const macVar = (ip: string) => `mac_${backendId(ip)}`;
const FLOW_KEY = 'ip saddr . th sport . ip daddr . th dport';
/**
 * The IPv6 flow key: nft 1.0.6 (Debian 12) aborts on a map update whose key is longer than 16 bytes (fixed in nft
 * 1.0.9, "netlink_linearize: skip set element expression in map statement key"), and the IPv6 4-tuple has 36. So the
 * key is 16 bytes: two hashes of the address pair under different seeds (64 bits: two flows share an entry only if
 * both hashes and both ports agree), both ports as one 32-bit word, and a hash of the VIP's address alone, by which
 * the runtime tells each flow's VIP. The seeds are part of every flow's identity: they never change.
 */
export const FLOW6_SEEDS = { pairA: 0x7d5a1c3b, pairB: 0x2c6e94f1, vip: 0x51f0a3d7 } as const;
const jhash32 = (expr: string, seed: number) => `jhash ${expr} mod 4294967295 seed 0x${hex32(seed)}`;
const FLOW_KEY6 = [
  jhash32('ip6 saddr . ip6 daddr', FLOW6_SEEDS.pairA),
  jhash32('ip6 saddr . ip6 daddr', FLOW6_SEEDS.pairB),
  '@th,0,32',
  jhash32('ip6 daddr', FLOW6_SEEDS.vip),
].join(' . ');
/** The flow maps' key declaration: `typeof numgen` gives jhash's integer type (a `typeof jhash` makes nft 1.0.6 crash listing it). */
const FLOW_KEY6_TYPE = 'numgen inc mod 2 . numgen inc mod 2 . @th,0,32 . numgen inc mod 2';

/** What differs between an IPv4 VIP's packet path and an IPv6 one's: the address expressions and the map names. */
interface FamilyTerms {
  /** Appended to flow map, VIP map and scheduler chain names: '' for IPv4 (names as before IPv6 came), '6' for IPv6. */
  readonly suffix: '' | '6';
  readonly protocol: 'ip' | 'ip6';
  readonly saddr: string;
  readonly daddr: string;
  readonly addrType: 'ipv4_addr' | 'ipv6_addr';
  readonly flowKey: string;
  readonly flowKeyType: (valueType: string) => { type: string; typeof?: boolean };
}

const FAMILY: Readonly<Record<4 | 6, FamilyTerms>> = {
  4: {
    suffix: '',
    protocol: 'ip',
    saddr: 'ip saddr',
    daddr: 'ip daddr',
    addrType: 'ipv4_addr',
    flowKey: FLOW_KEY,
    flowKeyType: (valueType) => ({ type: `ipv4_addr . inet_service . ipv4_addr . inet_service : ${valueType}` }),
  },
  6: {
    suffix: '6',
    protocol: 'ip6',
    saddr: 'ip6 saddr',
    daddr: 'ip6 daddr',
    addrType: 'ipv6_addr',
    flowKey: FLOW_KEY6,
    flowKeyType: (valueType) => ({ type: `${FLOW_KEY6_TYPE} : ${valueType === 'ether_addr' ? 'ether daddr' : 'meta mark'}`, typeof: true }),
  },
};

interface Shape {
  readonly chain: string;
  readonly pool: Pool;
  readonly modulus: number;
  readonly algorithm: 'rr' | 'sh' | 'ch';
}

function shapeOf(pool: Pool, modulus: number): Shape {
  const algorithm = pool.algorithm === 'source-hash' ? 'sh' : pool.algorithm === 'consistent-hash' ? 'ch' : 'rr';
  const chain = `${pool.mode}_${pool.protocol}${FAMILY[pool.family].suffix}_${pool.any ? 'any' : 'port'}_${algorithm}${modulus}_t${pool.flowTimeoutSec}${managedSuffix(pool)}`;
  return { chain, pool, modulus, algorithm };
}

/**
 * The chain of flow rules that every scheduler chain of one kind jumps to first (the same mode, protocol, family,
 * port kind, flow timeout and management: all its rules depend on). Shared, because the kernel walks a map's
 * elements whenever a new rule looks it up: with 100,000 open flows each `map @flows_…` rule took ≈ 10 ms to add, so a
 * scheduler chain of its own for a new slot count (a weight change) cost ≈ 80 ms, and ≈ 5 ms once it only jumps
 * here (BENCHMARKS.md, "Issue 17k"). Named to sort before every scheduler chain, so that it is added first.
 */
function flowChainOf(pool: Pool): string {
  return `flows_${pool.mode}_${pool.protocol}${FAMILY[pool.family].suffix}_${pool.any ? 'any' : 'port'}_t${pool.flowTimeoutSec}${managedSuffix(pool)}`;
}

/** The key that identifies a VIP on the packet path; the map names differ for single-port and all-port VIPs. */
function vipKeyExpr(any: boolean, family: FamilyTerms = FAMILY[4]): string {
  return any ? `${family.daddr} . meta l4proto` : `${family.daddr} . meta l4proto . th dport`;
}

/** The VIP lookup maps and sets of one kind and family: `vip_pool_port`, `vip_stats_any6`, … */
const vipMap = (role: 'pool' | 'stats', any: boolean, family: FamilyTerms) => `vip_${role}_${any ? 'any' : 'port'}${family.suffix}`;

/**
 * The sets whose elements count each VIP's packets and bytes, keyed like the VIP maps: one per kind (single-port,
 * all-port) and family. Element counters, not a named counter per VIP: nft 1.0.6 reads every named object of the
 * table before any element command, so ten thousand named counters made each of the runtime's health changes wait
 * for a dump of all of them (BENCHMARKS.md), while a set's elements are read only when that set is listed.
 */
export const VIP_STATS_SETS: readonly string[] = [FAMILY[4], FAMILY[6]].flatMap((family) => [false, true].map((any) => vipMap('stats', any, family)));

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
  /** A pair member's copy of new and refreshed flows to its peer (see flowCopyMapsOf). */
  readonly copy?: FlowCopyMaps;
}

/**
 * On a pair member, the maps through which the runtime copies flows to the other member: `recent` holds each flow
 * the data plane recorded or refreshed in the last RECENT_FLOW_TIMEOUT_SEC seconds, small enough to list several times
 * a second (listing the flow maps themselves takes seconds at 100,000 entries); `seen` lets a flow's packets into
 * `recent` once per third of its timeout, so a long flow's copy is renewed on the peer well before it expires there.
 */
export interface FlowCopyMaps {
  readonly recent: string;
  readonly seen: string;
}
/** How long a flow stays in a `recent_*` map: ten times the runtime's listing interval, so a slow listing misses none. */
export const RECENT_FLOW_TIMEOUT_SEC = 2;
/** The `recent_*` map names the runtime lists, per flow map: only IPv4 flows are copied (see the README). */
export const flowCopyMapsOf = (flows: string): FlowCopyMaps => ({ recent: flows.replace(/^flows_/, 'recent_'), seen: flows.replace(/^flows_/, 'seen_') });
/** How often a live flow is copied again: a third of its timeout, so its copy on the peer never expires while it lives. */
export const seenTimeoutSec = (flowTimeoutSec: number) => Math.max(1, Math.floor(flowTimeoutSec / 3));

/** How a scheduler chain records a flow: into the flow map, and on a pair member into the copy to its peer. */
function recordFlow(pool: Pool, maps: SchedulerMaps, valueExpr: string): { remember: string; record: string } {
  const key = FAMILY[pool.family].flowKey;
  const remember = `update @${maps.flows} { ${key} timeout ${pool.flowTimeoutSec}s : ${valueExpr} }`;
  // a pair member also notes the flow for the copy to its peer: what `remember` records, the runtime sends
  const copy = maps.copy;
  const noteForPeer = copy
    ? ` add @${copy.seen} { ${key} timeout ${seenTimeoutSec(pool.flowTimeoutSec)}s } update @${copy.recent} { ${key} : ${valueExpr} }`
    : '';
  return { remember, record: `${remember}${noteForPeer}` };
}

/**
 * The rules of a flow chain (see flowChainOf): the VIP's packets are counted, and a packet of a flow the balancer
 * knows goes to its backend. The VIP's pool id is in `meta priority` (set by the ingress dispatch); the backend goes
 * into `ether daddr` (L2) or `meta mark` (L3, which picks the tunnel). A packet it does not send on returns to the
 * scheduler chain that jumped here.
 */
function flowRules(pool: Pool, maps: SchedulerMaps, out: string, valueExpr: string): string[] {
  const { flows, closing, live } = maps;
  const family = FAMILY[pool.family];
  const key = family.flowKey;
  const timeout = `timeout ${pool.flowTimeoutSec}s`;
  const { remember, record } = recordFlow(pool, maps, valueExpr);
  const copy = maps.copy;
  const rules = [`${vipKeyExpr(pool.any, family)} @${vipMap('stats', pool.any, family)}`];
  const tcp = pool.protocol === 'tcp';
  const newFlow = tcp ? 'tcp flags & (syn|ack) == syn ' : '';
  if (tcp && closing) {
    // The client ends its connection (FIN or RST): the flow leaves the open flows for the closing ones, so that its
    // last packets (the ACK after a FIN, retransmissions) still reach its backend, while a later SYN on the same
    // 4-tuple is a new connection and is scheduled afresh, as IPVS does from the client's packets alone.
    rules.push(
      `tcp flags & (fin|rst) != 0 tcp flags & syn == 0 ${valueExpr} set ${key} map @${flows} ` +
        `update @${closing} { ${key} ${timeout} : ${valueExpr} } delete @${flows} { ${key} : ${valueExpr} } ` +
        `meta priority . ${valueExpr} @${maps.endedCounter} ${out}`,
    );
  }
  // Open flows next. A SYN that finds an entry keeps its backend (a retransmitted SYN) only while that backend still
  // takes new flows, so that a new connection on a 4-tuple whose end the balancer never saw cannot reach a drained
  // or removed backend. Otherwise the stale entry goes, and the SYN is scheduled afresh.
  const midFlow = tcp ? 'tcp flags & (syn|ack) != syn ' : '';
  // a flow the peer had copied within a third of its timeout only refreshes its entry; otherwise it is noted again
  if (copy) rules.push(`${midFlow}${key} @${copy.seen} ${valueExpr} set ${key} map @${flows} ${remember} ${out}`);
  rules.push(`${midFlow}${valueExpr} set ${key} map @${flows} ${record} ${out}`);
  if (tcp && closing)
    rules.push(`tcp flags & (syn|ack) != syn ${valueExpr} set ${key} map @${closing} update @${closing} { ${key} ${timeout} : ${valueExpr} } ${out}`);
  if (tcp) {
    rules.push(
      `${newFlow}${valueExpr} set ${key} map @${flows} meta priority . ${valueExpr} @${live} ${out}`,
      `${newFlow}delete @${flows} { ${key} : ${valueExpr} }`,
    );
  }
  // A new connection also retires what a closed one on the same 4-tuple left: `update` never replaces the value of an
  // element that exists, so a stale closing entry would send the new connection's last packets to the old backend.
  if (tcp && closing) rules.push(`${newFlow}${valueExpr} set ${key} map @${closing} delete @${closing} { ${key} : ${valueExpr} }`);
  return rules;
}

/**
 * The rules of a scheduler chain: the flow chain of its kind first, then, for a packet that starts a flow or that
 * the balancer does not know, the choice of a backend among the pool's `modulus` slots.
 */
function schedulerRules(shape: Shape, maps: SchedulerMaps, out: string, valueExpr: string): string[] {
  const { pool, modulus } = shape;
  const family = FAMILY[pool.family];
  const { record } = recordFlow(pool, maps, valueExpr);
  const pick = (chooser: string) => `${valueExpr} set meta priority . ${chooser} map @${maps.slots}`;
  const countNew = `meta priority . ${valueExpr} @${maps.newCounter}`;
  // The seed depends on the kind of scheduler only, so that a weight change (a new modulus) keeps it.
  const seed = `0x${hex32(fnv1a32(`tula-dsr/${pool.mode}_${pool.protocol}_${shape.algorithm}`))}`;
  const rules = [`jump ${flowChainOf(pool)}`];
  const tcp = pool.protocol === 'tcp';
  const newFlow = tcp ? 'tcp flags & (syn|ack) == syn ' : '';
  if (modulus === 0) return rules;
  // the hash of the whole 4-tuple, whatever the flow maps' key: a jhash input may be longer than 16 bytes
  const tuple = `${family.saddr} . th sport . ${family.daddr} . th dport`;
  const hash = shape.algorithm === 'sh' ? `jhash ${family.saddr} . ${family.daddr} mod ${modulus} seed ${seed}` : `jhash ${tuple} mod ${modulus} seed ${seed}`;
  const chooser = shape.algorithm === 'rr' ? `numgen inc mod ${modulus}` : hash;
  rules.push(`${newFlow}${pick(chooser)} ${record} ${countNew} ${out}`);
  // The kernel may refuse to record a flow whose 4-tuple was ended and reused moments before (its old entry waits
  // for the once-a-second garbage collection). Such a first packet then goes where the pinned-seed hash sends it,
  // which is where every later packet of the flow goes too until one of them records it: the flow works, it is
  // just not placed by round robin. Never the balancer's own stack, which owns the VIP and would answer a reset.
  if (tcp || shape.algorithm !== 'rr') rules.push(`${newFlow}${pick(hash)} ${countNew} ${out}`);
  if (tcp) {
    // A mid-stream packet without a flow entry (entry expired, balancer restarted): the same pinned-seed hash,
    // recorded when the kernel takes it, forwarded either way.
    rules.push(`${pick(hash)} ${record} ${out}`, `${pick(hash)} ${out}`);
  }
  return rules;
}

/** Managed pools' own maps and chains end in `_rt` (see buildBalancerTable). */
export const MANAGED_SUFFIX = '_rt';
const managedSuffix = (pool: Pool) => (pool.managed ? MANAGED_SUFFIX : '');

function slotValue(spec: Pick<BalancerSpec, 'vips'>, mode: VipSpec['mode'], backend: BackendSpec): string {
  return mode === 'l2' ? `$${macVar(backend.ip)}` : `0x${backendMark(backend.ip, spec)}`;
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

type MapDraft = {
  type: string;
  typeof?: boolean;
  set?: boolean;
  counter?: boolean;
  keepElements?: boolean;
  takesOver?: string;
  dynamic?: { timeoutSec: number; size: number };
  elements: NftElement[];
};

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
  return buildTable(spec, facts, header, policy, options).table;
}

function buildTable(spec: BalancerSpec, facts: BalancerFacts, header: readonly string[], policy: PoolPolicy, options: BuildOptions): BalancerTableDraft {
  const managedOnly = options.managedOnly ?? false;
  const vips = managedOnly ? [] : vipsByName(spec.vips);
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
  // only the VIP maps need it: the pool sync (managedOnly, no VIPs) must not index ten thousand VIPs at every change
  const classidOf = new Map<string, string>();
  if (vips.length) {
    for (const p of pools) {
      const classid = poolClassid(p.id);
      for (const name of p.vips) classidOf.set(name, classid);
    }
  }
  // the VIP maps of each family and kind (single-port, all-port), found once rather than by name for every VIP
  const vipDrafts: ({ readonly pool: MapDraft; readonly stats: MapDraft } | undefined)[] = [];
  for (const vip of vips) {
    const any = vip.port === '*';
    const ipFamily = familyOf(vip.ip);
    const slot = (ipFamily === 6 ? 2 : 0) + (any ? 1 : 0);
    let drafts = vipDrafts[slot];
    if (!drafts) {
      const family = FAMILY[ipFamily];
      const keyType = any ? `${family.addrType} . inet_proto` : `${family.addrType} . inet_proto . inet_service`;
      drafts = vipDrafts[slot] = {
        pool: mapOf(vipMap('pool', any, family), { type: `${keyType} : classid` }),
        // kept across reloads, elements added and deleted by key, so that each VIP's counter counts from its first load
        stats: mapOf(vipMap('stats', any, family), { type: keyType, set: true, counter: true, keepElements: true, takesOver: 'vip_' }),
      };
    }
    const key = nftVipKey(vip);
    const classid = classidOf.get(vip.name);
    if (classid === undefined) throw new Error(`buildBalancerTable: VIP ${vip.name} is in none of the pools`);
    drafts.pool.elements.push({ text: `${key} : ${classid}`, vip: vip.name });
    drafts.stats.elements.push({ text: key, vip: vip.name });
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
    const family = FAMILY[pool.family];
    const roles: SchedulerMaps = {
      flows: `flows_${pool.mode}_${pool.protocol}${family.suffix}`,
      closing: pool.protocol === 'tcp' ? `closing_${pool.mode}_tcp${family.suffix}` : undefined,
      slots: `slots_${pool.mode}${managedSuffix(pool)}`,
      live: `live_${pool.mode}${managedSuffix(pool)}`,
      newCounter: `pool_new_${pool.mode}`,
      endedCounter: `pool_ended_${pool.mode}`,
      // IPv6 flow keys are hashes the peer could not check against its VIPs: only IPv4 flows are copied
      copy: spec.pair && pool.family === 4 ? flowCopyMapsOf(`flows_${pool.mode}_${pool.protocol}`) : undefined,
    };
    for (const dynamic of [roles.flows, roles.closing]) {
      if (dynamic) mapOf(dynamic, { ...family.flowKeyType(valueType), dynamic: { timeoutSec: 3600, size: FLOW_MAP_SIZE } });
    }
    if (roles.copy) {
      // as large as the flow maps: a full map would make the rule that records a new flow fail
      mapOf(roles.copy.recent, { ...family.flowKeyType(valueType), dynamic: { timeoutSec: RECENT_FLOW_TIMEOUT_SEC, size: FLOW_MAP_SIZE } });
      mapOf(roles.copy.seen, { type: family.flowKeyType(valueType).type.replace(/ : .*$/, ''), set: true, dynamic: { timeoutSec: 3600, size: FLOW_MAP_SIZE } });
    }
    mapOf('pool_chain', { type: 'classid : verdict' }).elements.push(own(`${classid} : goto ${shape.chain}`));
    // the typeof's modulus is only there to give the key its type: each rule uses its pool's own modulus
    const slotMap = mapOf(roles.slots, { type: `meta priority . numgen inc mod 2 : ${valueExpr}`, typeof: true });
    const values = new Map(pool.backends.map((b) => [b.name, slotValue(spec, pool.mode, b)]));
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
      const flowChain = flowChainOf(pool);
      if (!chains.has(flowChain)) chains.set(flowChain, { name: flowChain, rules: flowRules(pool, roles, out, valueExpr) });
      chains.set(shape.chain, { name: shape.chain, rules: schedulerRules(shape, roles, out, valueExpr) });
    }
  }

  const orderedIps = (m: Map<string, BackendSpec>) => [...m.keys()].sort(compareAddresses);
  const macBackends: BackendSpec[] = [];
  if (l2Backends.size) {
    // A dual-stack host has one MAC for its IPv4 and its IPv6 address: each family counts in a map of its own, so
    // that the MAC is a key once per map (IPv4 keeps the map and rules it had before IPv6 came)
    const ips = orderedIps(l2Backends);
    for (const ip of ips) {
      macBackends.push(l2Backends.get(ip)!);
      counters.add(`be_${backendId(ip)}`);
      const map = familyOf(ip) === 6 ? BACKEND_MAC_MAP6 : 'backend_counter_l2';
      mapOf(map, { type: 'ether_addr : counter' }).elements.push({ text: `$${macVar(ip)} : be_${backendId(ip)}` });
    }
    // Rewriting the source MAC keeps the switch from learning the client's MAC on the balancer's port; the pool
    // id goes, so that it cannot pick a queue of the outgoing interface (skb->priority selects pfifo bands).
    const out = `meta priority set 0:0 ether saddr set $lb_mac fwd to "${spec.interface}"`;
    const rules: string[] = [];
    if (ips.some((ip) => familyOf(ip) === 6)) rules.push(`meta protocol ip6 counter name ether daddr map @${BACKEND_MAC_MAP6} ${out}`);
    if (ips.some((ip) => familyOf(ip) === 4)) rules.push('counter name ether daddr map @backend_counter_l2', out);
    chains.set('l2_out', { name: 'l2_out', rules });
  }
  if (l3Backends.size) {
    const dispatch = mapOf('l3_backends', { type: 'mark : verdict' });
    for (const ip of orderedIps(l3Backends)) {
      const id = backendId(ip);
      counters.add(`be_${id}`);
      dispatch.elements.push({ text: `0x${backendMark(ip, spec)} : goto be_${id}` });
      const fwd = `fwd ${FAMILY[familyOf(ip)].protocol} to ${ip} device "${tunnelName(ip, spec)}"`;
      chains.set(`be_${id}`, { name: `be_${id}`, rules: [`counter name be_${id} meta priority set 0:0 ${fwd}`] });
    }
  }

  // one lookup per packet: its family's protocol test picks the map for its address family. A pair member takes only
  // frames sent to its own MAC: a switch floods a frame whose destination it has not learnt (after an FDB entry aged
  // out, or the other member's port went down) to both members, and the passive one must not schedule it too (a
  // second SYN to another backend). VRRP's gratuitous ARP moves the VIPs' traffic to it instead.
  const ownFrames = spec.pair ? 'meta pkttype host ' : '';
  const ingressRules = [FAMILY[4], FAMILY[6]].flatMap((family) =>
    [false, true]
      .filter((any) => maps.has(vipMap('pool', any, family)))
      .map(
        (any) =>
          `${ownFrames}meta protocol ${family.protocol} meta priority set ${vipKeyExpr(any, family)} map @${vipMap('pool', any, family)} meta priority vmap @pool_chain`,
      ),
  );
  const ingress: NftChain = {
    name: 'ingress',
    hook: `type filter hook ingress device "${spec.interface}" priority -300; policy accept;`,
    rules: ingressRules,
  };
  const sortedChains = [ingress, ...[...chains.values()].sort((a, b) => (a.name < b.name ? -1 : 1))];
  const sortedMaps: NftMap[] = [...maps.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    // a kept set declares no size: a new size would declare it afresh, and its counters would start from zero again
    .map(([name, m]) => ({ name, ...m, ...(m.dynamic || m.keepElements ? {} : { size: staticMapSize(m.elements.length) }) }));
  const table: NftTable = {
    family: 'netdev',
    name: BALANCER_TABLE,
    header,
    defines: macDefines(spec, facts, macBackends),
    counters: [...counters].sort(),
    maps: sortedMaps,
    chains: sortedChains,
  };
  return { table, macBackends };
}

/**
 * The table's only values that come from the host: the MACs of the balancer's interface and of its L2 backends, as
 * defines that the rules and elements name. None without L2 backends.
 */
function macDefines(spec: BalancerSpec, facts: BalancerFacts, backends: readonly BackendSpec[]): NftDefine[] {
  if (!backends.length) return [];
  const lbMac = spec.mac ?? facts.interfaceMac ?? null;
  const defines: NftDefine[] = [
    {
      name: 'lb_mac',
      value: lbMac,
      comment: lbMac && spec.mac ? `${spec.interface}, as configured` : `MAC of ${spec.interface}, read on the balancer at apply time`,
    },
  ];
  for (const { ip, mac: configured } of backends) {
    const mac = configured ?? facts.backendMacs?.[ip] ?? null;
    defines.push({
      name: macVar(ip),
      value: mac,
      comment: mac && configured ? `${ip}, as configured` : `MAC of ${ip}, resolved on the balancer at apply time`,
    });
  }
  return defines;
}

/**
 * A balancer's table built before the host's facts are known: the agent builds it while the host runs the facts
 * script, and gives it the MACs once they come (withBalancerFacts). Only the defines differ between the two.
 */
export interface BalancerTableDraft {
  readonly table: NftTable;
  /** The L2 backends whose MACs the defines name, in define order. */
  readonly macBackends: readonly BackendSpec[];
}

export function draftBalancerTable(spec: BalancerSpec, header: readonly string[] = []): BalancerTableDraft {
  return buildTable(spec, {}, header, DEFAULT_POLICY, {});
}

/** The draft's table with the MACs the facts give: what buildBalancerTable builds from the same spec and facts. */
export function withBalancerFacts(draft: BalancerTableDraft, spec: BalancerSpec, facts: BalancerFacts): NftTable {
  return withDefines(draft.table, macDefines(spec, facts, draft.macBackends));
}

/** The balancer's tunnels for L3 backends (IPIP to IPv4 ones, ip6tnl to IPv6 ones), in address order. */
export function balancerTunnels(spec: BalancerSpec): { name: string; local: string; remote: string }[] {
  const remotes = new Set(spec.vips.filter((v) => v.mode === 'l3').flatMap((v) => v.backends.map((b) => b.ip)));
  return [...remotes]
    .sort(compareAddresses)
    .map((remote) => ({ name: tunnelName(remote, spec), local: familyOf(remote) === 6 ? spec.ipv6Address! : spec.address!, remote }));
}
