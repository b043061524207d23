import { z } from 'zod';
import { parseIpAddress } from './address';
import { BalancerFacts, backendMark, flowCopyMapsOf } from './nft/balancer';
import type { BalancerSpec, VipSpec } from './spec';

/**
 * The flow copy between the members of a balancer pair: each member's runtime lists the flows its data plane recorded
 * lately (the `recent_*` maps) and sends them to the other member's runtime, which adds them to its own flow maps, so
 * that an established connection keeps its backend after a failover. What is pure lives here: the runtime
 * configuration's section, and the receiver's check of each entry against the pair's VIPs and their backends.
 */

/** The runtime signs the channel's handshake with the host's own SSH host key, which only root can read. */
export const FLOW_COPY_HOST_KEY_FILE = '/etc/ssh/ssh_host_ed25519_key';
/** How often the runtime lists the `recent_*` maps (ten times within their timeout). */
export const FLOW_COPY_INTERVAL_MS = 200;

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

export const FlowCopyConfigSchema = z.strictObject({
  /** Where this member's runtime takes the peer's copies: its own address. */
  listen: z.strictObject({ address: z.string(), port: z.number().int().min(1).max(65535) }),
  /** Where the peer's runtime takes this member's copies. */
  peer: z.strictObject({ name: z.string(), address: z.string(), port: z.number().int().min(1).max(65535) }),
  /** The peer's ed25519 host key fingerprints the channel accepts (what the peer's `ssh` pins). */
  peerKeys: z.array(z.string().regex(FINGERPRINT)).min(1),
  hostKeyFile: z.string(),
  intervalMs: z.number().int().min(20).max(10_000),
});
export type FlowCopyConfig = z.infer<typeof FlowCopyConfigSchema>;

export function flowCopyConfig(spec: BalancerSpec, peerKeys: readonly string[]): FlowCopyConfig | undefined {
  const pair = spec.pair;
  if (!pair || spec.address === undefined) return undefined;
  return {
    listen: { address: spec.address, port: pair.flowCopyPort },
    peer: { name: pair.peerName, address: pair.peerAddress, port: pair.flowCopyPort },
    peerKeys: [...peerKeys],
    hostKeyFile: FLOW_COPY_HOST_KEY_FILE,
    intervalMs: FLOW_COPY_INTERVAL_MS,
  };
}

/** One copied flow: which flow map, the 4-tuple, and the backend (a MAC in L2, a mark as 0x + 8 hex digits in L3). */
export interface FlowEntry {
  readonly map: string;
  readonly saddr: string;
  readonly sport: number;
  readonly daddr: string;
  readonly dport: number;
  readonly value: string;
}

/** The flow maps whose entries are copied: IPv4 flows of each mode and protocol. */
export const COPIED_FLOW_MAPS = ['flows_l2_tcp', 'flows_l2_udp', 'flows_l3_tcp', 'flows_l3_udp'] as const;
/** The `recent_*` map each copied flow map is noted in. */
export const RECENT_FLOW_MAPS = COPIED_FLOW_MAPS.map((m) => flowCopyMapsOf(m).recent);

interface VipTarget {
  readonly vip: VipSpec;
  /** The values the VIP's backends have in the flow maps. */
  readonly values: ReadonlySet<string>;
}

const canonicalIp = (ip: string): string => parseIpAddress(ip)?.text ?? ip;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const mapParts = (map: string) => /^flows_(l2|l3)_(tcp|udp)$/.exec(map);

/**
 * The receiver's check of copied flows: an entry is written only when its map is a copied flow map, its 4-tuple is
 * well formed and names one of the pair's VIPs of that mode and protocol, and its value is one of that VIP's
 * backends. Anyone who could write flow entries could steer a VIP's traffic to any MAC on the segment.
 */
export class FlowEntryChecker {
  private readonly byKey = new Map<string, VipTarget[]>();

  constructor(spec: BalancerSpec, facts: BalancerFacts) {
    for (const vip of spec.vips) {
      if (parseIpAddress(vip.ip)?.family !== 4) continue;
      const values = new Set(
        vip.backends.flatMap((b) => {
          if (vip.mode === 'l3') return [`0x${backendMark(b.ip, spec)}`];
          const mac = b.mac ?? facts.backendMacs?.[b.ip];
          return mac ? [mac.toLowerCase()] : [];
        }),
      );
      const key = `${vip.mode}_${vip.protocol} ${canonicalIp(vip.ip)}`;
      this.byKey.set(key, [...(this.byKey.get(key) ?? []), { vip, values }]);
    }
  }

  /** Why `entry` is refused, or null when it may be written (then with `timeoutSec`, its VIP's flow timeout). */
  check(entry: FlowEntry): { problem: string } | { timeoutSec: number; vip: string } {
    const parts = mapParts(entry.map);
    if (!parts) return { problem: `map ${JSON.stringify(entry.map)} is not a copied flow map (${COPIED_FLOW_MAPS.join(', ')})` };
    const port = (p: number) => Number.isInteger(p) && p >= 0 && p <= 65535;
    if (parseIpAddress(entry.saddr)?.family !== 4 || !port(entry.sport) || parseIpAddress(entry.daddr)?.family !== 4 || !port(entry.dport))
      return { problem: `${describe(entry)} is not an IPv4 4-tuple` };
    const targets = this.byKey.get(`${parts[1]}_${parts[2]} ${canonicalIp(entry.daddr)}`) ?? [];
    const target = targets.find((t) => t.vip.port === '*' || t.vip.port === entry.dport);
    if (!target) return { problem: `${describe(entry)}: ${entry.daddr}:${entry.dport} is no ${parts[1]} ${parts[2]} VIP of this pair` };
    const value = entry.value.toLowerCase();
    if (!(parts[1] === 'l2' ? MAC.test(value) : /^0x[0-9a-f]{8}$/.test(value)) || !target.values.has(value))
      return { problem: `${describe(entry)}: ${JSON.stringify(entry.value)} is not a backend of VIP ${target.vip.name}` };
    return { timeoutSec: target.vip.flowTimeoutSec, vip: target.vip.name };
  }
}

const describe = (e: FlowEntry) => `${e.map} ${e.saddr}:${e.sport} -> ${e.daddr}:${e.dport}`;

/**
 * The nft commands that put checked entries into the flow maps with their VIP's timeout. An entry that exists is
 * replaced: `add` of an existing element with the same value does nothing and `update` never replaces a value, so the
 * element goes and comes back; the first `add` makes the `delete` valid whether or not it existed. An existing
 * element with another value makes the first `add` fail: the caller then writes that entry with `replaceCommands`.
 */
export function writeCommands(table: string, entries: readonly (FlowEntry & { timeoutSec: number })[]): string {
  return entries
    .map((e) => {
      const key = `${e.saddr} . ${e.sport} . ${e.daddr} . ${e.dport}`;
      return [
        `add element ${table} ${e.map} { ${key} : ${e.value} }`,
        `delete element ${table} ${e.map} { ${key} }`,
        `add element ${table} ${e.map} { ${key} timeout ${e.timeoutSec}s : ${e.value} }`,
      ].join('\n');
    })
    .join('\n');
}

/** One entry whose key the map holds with another value: deleted and added again, in one transaction. */
export function replaceCommands(table: string, e: FlowEntry & { timeoutSec: number }): string {
  const key = `${e.saddr} . ${e.sport} . ${e.daddr} . ${e.dport}`;
  return [`delete element ${table} ${e.map} { ${key} }`, `add element ${table} ${e.map} { ${key} timeout ${e.timeoutSec}s : ${e.value} }`].join('\n');
}
