import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBalancerTable, formatIpv4, renderNftReload, BalancerFacts, BalancerSpec } from '../model';
import { Stat, stat, timeMs } from './stats';

/** Which VIPs a scale spec holds: IPv4, IPv6, or half of each (the first half IPv4) on one balancer. */
export type ScaleFamily = 4 | 6 | 'mixed';

const BACKEND_OCTETS = [11, 12, 13, 14];
const backendIp = (i: number, six: boolean) => (six ? `fd00:d6:fa::${i.toString(16)}` : `10.213.250.${i}`);

/** A balancer spec with `count` L2 VIPs × 4 backends (of the VIP's family), as the scale benchmarks use. */
export function scaleSpec(count: number, family: ScaleFamily = 4): BalancerSpec {
  const backendsOf = (six: boolean) => BACKEND_OCTETS.map((i) => ({ path: `be${i}`, name: `be${i}`, ip: backendIp(i, six), weight: 1 }));
  const v4 = backendsOf(false);
  const v6 = backendsOf(true);
  const isSix = (v: number) => family === 6 || (family === 'mixed' && v >= count / 2);
  const vips = Array.from({ length: count }, (_, v) => ({
    path: `vip${v}`,
    name: `vip${v}`,
    ip: isSix(v) ? `fd00:d6::${v.toString(16)}` : formatIpv4(0x0ad60000 + v),
    port: 80 as const,
    protocol: 'tcp' as const,
    mode: 'l2' as const,
    algorithm: 'weighted-round-robin' as const,
    flowTimeoutSec: 300,
    backends: isSix(v) ? v6 : v4,
  }));
  return { kind: 'balancer', path: 'lb', name: 'lb', ssh: { host: '10.213.250.2', port: 22, user: 'root' }, interface: 'eth0', address: '10.213.250.2', vips };
}

/** Each backend host has one MAC for its IPv4 and its IPv6 address (dual stack). */
export const SCALE_MACS = {
  interfaceMac: '02:00:00:00:00:aa',
  backendMacs: Object.fromEntries(BACKEND_OCTETS.flatMap((i) => [false, true].map((six) => [backendIp(i, six), `02:00:00:00:00:${i}`]))),
};

/** Renders the in-place reload of a balancer's table for an empty host, as a first apply does. */
export function renderFirstLoad(spec: BalancerSpec, facts: BalancerFacts): string {
  return renderNftReload(buildBalancerTable(spec, facts), { exists: false, counters: [], maps: [], sets: [], chains: [], sizes: {}, hooks: {} });
}

/** The first load of `count` VIPs × 4 backends of the given family. */
export function renderScaleRuleset(count: number, family: ScaleFamily = 4): string {
  return renderFirstLoad(scaleSpec(count, family), SCALE_MACS);
}

/** How many set and map elements an nft file adds (named objects such as counters are not elements). */
export function countNftElements(text: string): number {
  let count = 0;
  for (const line of text.split('\n')) {
    const body = /^add element [^{]*\{(.*)\}\s*$/.exec(line)?.[1];
    if (body?.trim()) count += body.split(',').length;
  }
  return count;
}

/**
 * The yardstick for a ruleset load: `elements` entries in one plain map of the same key shape as the VIP lookup,
 * in a table of its own. What `nft -f` costs for this file is the floor for loading that many elements on this
 * machine, so the ratio holds on a slow day too.
 */
export function renderPlainMap(elements: number): string {
  const entries = Array.from({ length: elements }, (_, i) => `${formatIpv4(0x0b000000 + i)} . tcp . 80 : ${(i % 0xffff).toString(16)}:1`);
  return [
    'add table netdev tula_plain',
    `add map netdev tula_plain plain { type ipv4_addr . inet_proto . inet_service : classid; size ${elements}; }`,
    'flush map netdev tula_plain plain',
    `add element netdev tula_plain plain { ${entries.join(', ')} }`,
    '',
  ].join('\n');
}

export interface NftLoad {
  readonly render: Stat;
  readonly load: Stat;
  readonly reload: Stat;
  /** Set and map elements in the rendered file (the plain map gets as many). */
  readonly elements: number;
  /** `nft -f` of one plain map with `elements` entries into an empty table, alternating with `load`. */
  readonly plainLoad: Stat;
}

/**
 * Render + `nft -f` time for 1, 1,000 and 10,000 VIPs of the family in a namespace of its own (with a veth named
 * eth0), each measured `runs` times on a fresh table, alternating with a plain map of as many elements.
 */
export function measureNftLoad(counts: readonly number[] = [1, 1000, 10000], runs = 3, family: ScaleFamily = 4): Record<number, NftLoad> {
  const ns = `tula-bench-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'tula-nft-'));
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  const inNs = (...args: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...args], { stdio: 'pipe' });
  ip('netns', 'add', ns);
  try {
    ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    const deleteTable = (name: string) => {
      try {
        inNs('nft', 'delete', 'table', 'netdev', name);
      } catch {
        // absent
      }
    };
    const result: Record<number, NftLoad> = {};
    for (const count of counts) {
      const render: number[] = [];
      const load: number[] = [];
      const reload: number[] = [];
      const plainLoad: number[] = [];
      const elements = countNftElements(renderScaleRuleset(count, family));
      const plainFile = join(dir, `plain${count}.nft`);
      writeFileSync(plainFile, renderPlainMap(elements));
      for (let r = 0; r < runs; r++) {
        deleteTable('tula_plain');
        plainLoad.push(timeMs(() => inNs('nft', '-f', plainFile)).ms);
        deleteTable('tula_plain');
        const { ms, value: text } = timeMs(() => renderScaleRuleset(count, family));
        render.push(ms);
        const file = join(dir, `r${count}.nft`);
        writeFileSync(file, text);
        deleteTable('tula_dsr');
        load.push(timeMs(() => inNs('nft', '-f', file)).ms);
        reload.push(timeMs(() => inNs('nft', '-f', file)).ms);
      }
      result[count] = { render: stat(render), load: stat(load), reload: stat(reload), elements, plainLoad: stat(plainLoad) };
    }
    return result;
  } finally {
    ip('netns', 'del', ns);
    rmSync(dir, { recursive: true, force: true });
  }
}
