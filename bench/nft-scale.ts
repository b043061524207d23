import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBalancerTable, formatIpv4, renderNftReload, BalancerFacts, BalancerSpec } from '../model';
import { Stat, stat, timeMs } from './stats';

/** A balancer spec with `count` L2 VIPs × 4 backends, as the scale benchmarks use. */
export function scaleSpec(count: number): BalancerSpec {
  const backends = [11, 12, 13, 14].map((i) => ({ path: `be${i}`, name: `be${i}`, ip: `10.213.250.${i}`, weight: 1 }));
  const vips = Array.from({ length: count }, (_, v) => ({
    path: `vip${v}`,
    name: `vip${v}`,
    ip: formatIpv4(0x0ad60000 + v),
    port: 80 as const,
    protocol: 'tcp' as const,
    mode: 'l2' as const,
    algorithm: 'weighted-round-robin' as const,
    flowTimeoutSec: 300,
    backends,
  }));
  return { kind: 'balancer', path: 'lb', name: 'lb', ssh: { host: '10.213.250.2', port: 22, user: 'root' }, interface: 'eth0', address: '10.213.250.2', vips };
}

export const SCALE_MACS = {
  interfaceMac: '02:00:00:00:00:aa',
  backendMacs: Object.fromEntries([11, 12, 13, 14].map((i) => [`10.213.250.${i}`, `02:00:00:00:00:${i}`])),
};

/** Renders the in-place reload of a balancer's table for an empty host, as a first apply does. */
export function renderFirstLoad(spec: BalancerSpec, facts: BalancerFacts): string {
  return renderNftReload(buildBalancerTable(spec, facts), { exists: false, counters: [], maps: [], sets: [], chains: [], sizes: {}, hooks: {} });
}

/** The first load of `count` VIPs × 4 backends. */
export function renderScaleRuleset(count: number): string {
  return renderFirstLoad(scaleSpec(count), SCALE_MACS);
}

/**
 * Render + `nft -f` time for 1, 1,000 and 10,000 VIPs in a namespace of its own (with a veth named eth0),
 * each measured `runs` times on a fresh table.
 */
export function measureNftLoad(counts: readonly number[] = [1, 1000, 10000], runs = 3): Record<number, { render: Stat; load: Stat; reload: Stat }> {
  const ns = `tula-bench-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'tula-nft-'));
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  const inNs = (...args: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...args], { stdio: 'pipe' });
  ip('netns', 'add', ns);
  try {
    ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    const result: Record<number, { render: Stat; load: Stat; reload: Stat }> = {};
    for (const count of counts) {
      const render: number[] = [];
      const load: number[] = [];
      const reload: number[] = [];
      for (let r = 0; r < runs; r++) {
        const { ms, value: text } = timeMs(() => renderScaleRuleset(count));
        render.push(ms);
        const file = join(dir, `r${count}.nft`);
        writeFileSync(file, text);
        try {
          inNs('nft', 'delete', 'table', 'netdev', 'tula_dsr');
        } catch {
          // absent
        }
        load.push(timeMs(() => inNs('nft', '-f', file)).ms);
        reload.push(timeMs(() => inNs('nft', '-f', file)).ms);
      }
      result[count] = { render: stat(render), load: stat(load), reload: stat(reload) };
    }
    return result;
  } finally {
    ip('netns', 'del', ns);
    rmSync(dir, { recursive: true, force: true });
  }
}
