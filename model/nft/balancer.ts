import { compareAddresses, hex32, parseIpv4 } from '../address';
import { DEFAULT_MAGLEV_SIZE, equalShareSequence, fnv1a32, maglevTable, smoothWeightedSequence } from '../scheduling';
import type { BackendSpec, BalancerSpec, VipSpec } from '../spec';
import { nftVipKey } from '../vip-key';
import { NftChain, NftDefine, NftElement, NftMap, NftTable } from './objects';
import { staticMapSize } from './render';

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
  readonly vip: VipSpec;
  readonly any: boolean;
  readonly modulus: number;
  readonly algorithm: 'rr' | 'sh' | 'ch';
}

function slotSequence(vip: VipSpec): string[] {
  const weighted = vip.backends.map((b) => ({ name: b.name, weight: b.weight }));
  switch (vip.algorithm) {
    case 'round-robin':
      return equalShareSequence(weighted);
    case 'consistent-hash':
      return maglevTable(weighted, vip.hashTableSize ?? DEFAULT_MAGLEV_SIZE);
    default:
      return smoothWeightedSequence(weighted);
  }
}

function shapeOf(vip: VipSpec, modulus: number): Shape {
  const any = vip.port === '*';
  const algorithm = vip.algorithm === 'source-hash' ? 'sh' : vip.algorithm === 'consistent-hash' ? 'ch' : 'rr';
  const chain = `${vip.mode}_${vip.protocol}_${any ? 'any' : 'port'}_${algorithm}${modulus}_t${vip.flowTimeoutSec}`;
  return { chain, vip, any, modulus, algorithm };
}

/** The key that identifies a VIP on the packet path; the map names differ for single-port and all-port VIPs. */
function vipKeyExpr(any: boolean): string {
  return any ? 'ip daddr . meta l4proto' : 'ip daddr . meta l4proto . th dport';
}

function schedulerRules(shape: Shape, flows: string, slots: string, out: string, valueExpr: string, live: string): string[] {
  const { vip, any, modulus } = shape;
  const timeout = `timeout ${vip.flowTimeoutSec}s`;
  const remember = `update @${flows} { ${FLOW_KEY} ${timeout} : ${valueExpr} }`;
  const pick = `${valueExpr} set ${vipKeyExpr(any)} . meta mark map @${slots}`;
  // The seed depends on the kind of scheduler only, so that a weight change (a new modulus) keeps it.
  const seed = `0x${hex32(fnv1a32(`tula-dsr/${vip.mode}_${vip.protocol}_${shape.algorithm}`))}`;
  const rules = [`counter name ${vipKeyExpr(any)} map @vip_counter_${any ? 'any' : 'port'}`];
  const newFlow = vip.protocol === 'tcp' ? 'tcp flags & (syn|ack) == syn ' : '';
  // Existing flows first. A SYN that finds an entry keeps its backend (a retransmitted SYN) only while that backend
  // still takes new flows: clients reuse source ports long before entries expire, and such a new connection must
  // not reach a drained or removed backend. Otherwise the stale entry goes, and the SYN is scheduled afresh.
  rules.push(`${newFlow ? 'tcp flags & (syn|ack) != syn ' : ''}${valueExpr} set ${FLOW_KEY} map @${flows} ${remember} ${out}`);
  if (newFlow)
    rules.push(
      `${newFlow}${valueExpr} set ${FLOW_KEY} map @${flows} ${vipKeyExpr(any)} . ${valueExpr} @${live} ${out}`,
      `${newFlow}delete @${flows} { ${FLOW_KEY} : ${valueExpr} }`,
    );
  if (modulus === 0) return rules;
  const hash = shape.algorithm === 'sh' ? `jhash ip saddr . ip daddr mod ${modulus} seed ${seed}` : `jhash ${FLOW_KEY} mod ${modulus} seed ${seed}`;
  const chooser = shape.algorithm === 'rr' ? `numgen inc mod ${modulus}` : hash;
  rules.push(`${newFlow}meta mark set ${chooser} ${pick} ${remember} ${out}`);
  if (vip.protocol === 'tcp') {
    // A mid-stream packet without a flow entry (entry expired, balancer restarted): a pinned-seed hash, never
    // the balancer's own stack, which owns the VIP and would answer with a reset.
    rules.push(`meta mark set ${hash} ${pick} ${remember} ${out}`);
  }
  return rules;
}

function slotValue(vip: VipSpec, backend: BackendSpec): string {
  return vip.mode === 'l2' ? `$${macVar(backend.ip)}` : `0x${backendId(backend.ip)}`;
}

function byName<T extends { name: string }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Builds the balancer's single table: one ingress base chain on the balancer interface dispatches every packet
 * with one map lookup on (daddr, protocol, dport), or on (daddr, protocol) for all-port VIPs, into a scheduler
 * chain shared by all VIPs of the same shape. Per VIP and per backend state lives in maps, so the packet path
 * does O(1) lookups whatever the number of VIPs.
 */
export function buildBalancerTable(spec: BalancerSpec, facts: BalancerFacts = {}, header: readonly string[] = []): NftTable {
  const vips = byName(spec.vips);
  const defines: NftDefine[] = [];
  const counters = new Set<string>();
  const maps = new Map<string, { type: string; set?: boolean; dynamic?: { timeoutSec: number; size: number }; elements: NftElement[] }>();
  const chains = new Map<string, NftChain>();
  const mapOf = (name: string, type: string, dynamic?: { timeoutSec: number; size: number }, set?: boolean) => {
    if (!maps.has(name)) maps.set(name, { type, dynamic, elements: [], ...(set ? { set } : {}) });
    return maps.get(name)!;
  };
  const l2Backends = new Map<string, BackendSpec>();
  const l3Backends = new Map<string, BackendSpec>();

  for (const vip of vips) {
    const sequence = slotSequence(vip);
    const shape = shapeOf(vip, sequence.length);
    const any = shape.any;
    const kind = any ? 'any' : 'port';
    const keyType = any ? 'ipv4_addr . inet_proto' : 'ipv4_addr . inet_proto . inet_service';
    const key = nftVipKey(vip);
    const own = (text: string): NftElement => ({ text, vip: vip.name });
    const vipCounter = `vip_${vip.name}`;
    counters.add(vipCounter);
    mapOf(`vip_${kind}`, `${keyType} : verdict`).elements.push(own(`${key} : goto ${shape.chain}`));
    mapOf(`vip_counter_${kind}`, `${keyType} : counter`).elements.push(own(`${key} : ${vipCounter}`));

    const l2 = vip.mode === 'l2';
    const flows = `flows_${vip.mode}_${vip.protocol}`;
    const slots = `slots_${vip.mode}_${kind}`;
    const live = `live_${vip.mode}_${kind}`;
    const valueType = l2 ? 'ether_addr' : 'mark';
    mapOf(flows, `ipv4_addr . inet_service . ipv4_addr . inet_service : ${valueType}`, { timeoutSec: 3600, size: FLOW_MAP_SIZE });
    const slotMap = mapOf(slots, `${keyType} . mark : ${valueType}`);
    const values = new Map(vip.backends.map((b) => [b.name, slotValue(vip, b)]));
    sequence.forEach((name, index) => slotMap.elements.push(own(`${key} . ${index} : ${values.get(name)}`)));
    for (const backend of vip.backends) (l2 ? l2Backends : l3Backends).set(backend.ip, backend);
    // (VIP, backend) pairs that take new flows; a set, because the verdict is the same for every element
    const liveSet = vip.protocol === 'tcp' ? mapOf(live, `${keyType} . ${valueType}`, undefined, true) : undefined;
    for (const b of vip.backends) if (b.weight > 0) liveSet?.elements.push(own(`${key} . ${values.get(b.name)}`));

    if (!chains.has(shape.chain)) {
      const out = l2 ? 'goto l2_out' : 'meta mark vmap @l3_backends';
      chains.set(shape.chain, { name: shape.chain, rules: schedulerRules(shape, flows, slots, out, l2 ? 'ether daddr' : 'meta mark', live) });
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
    const counterMap = mapOf('backend_counter_l2', 'ether_addr : counter');
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
        // Rewriting the source MAC keeps the switch from learning the client's MAC on the balancer's port.
        `ether saddr set $lb_mac fwd to "${spec.interface}"`,
      ],
    });
  }
  if (l3Backends.size) {
    const dispatch = mapOf('l3_backends', 'mark : verdict');
    for (const ip of orderedIps(l3Backends)) {
      const id = backendId(ip);
      counters.add(`be_${id}`);
      dispatch.elements.push({ text: `0x${id} : goto be_${id}` });
      chains.set(`be_${id}`, { name: `be_${id}`, rules: [`counter name be_${id} fwd ip to ${ip} device "${tunnelName(ip)}"`] });
    }
  }

  const ingressRules = ['vip_port', 'vip_any'].filter((m) => maps.has(m)).map((m) => `meta protocol ip ${vipKeyExpr(m === 'vip_any')} vmap @${m}`);
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
