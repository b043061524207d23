/**
 * Slot pools: which VIPs share one, the slot tables of pools the runtime manages (least connections, health), and the
 * small transaction that rewrites one pool's elements while every other element stays as it is.
 */
import { performance } from 'node:perf_hooks';
import {
  BackendSpec,
  LEAST_CONNECTIONS,
  Pool,
  VipSpec,
  balancerNeedsRuntime,
  buildBalancerTable,
  formatIpv4,
  groupPools,
  managedSlotCount,
  poolClassid,
  poolIdOfClassid,
  poolName,
  poolSequence,
  renderBalancerReview,
  renderOwnedUpdate,
  vipBackendChecks,
} from '../../model';
import { backends, balancerSpec, factsFor } from '../support/render-fixtures';

const count = (items: readonly string[]) => items.reduce<Record<string, number>>((acc, x) => ({ ...acc, [x]: (acc[x] ?? 0) + 1 }), {});

describe('grouping', () => {
  test('GIVEN 1,000 VIPs over the same backends and weights and one with other weights WHEN grouped THEN two pools, the odd VIP alone', () => {
    const vips = Array.from({ length: 1000 }, (_, i) => ({
      name: `v${i}`,
      ip: `10.0.${2 + Math.floor(i / 250)}.${(i % 250) + 1}`,
      port: 80,
      backends: backends(),
    }));
    const spec = balancerSpec([...vips, { name: 'odd', ip: '10.0.9.1', port: 80, backends: backends([1, 1, 1]) }]);
    const pools = groupPools(spec.vips);
    expect(pools.map((p) => p.vips.length).sort((a, b) => a - b)).toEqual([1, 1000]);
    expect(pools.find((p) => p.vips.length === 1)!.vips).toEqual(['odd']);
  });

  test('GIVEN a weight change WHEN grouped again THEN the pool keeps its id (its id leaves the weights out)', () => {
    const before = groupPools(balancerSpec([{ name: 'web', ip: '10.0.1.100', port: 80, backends: backends([1, 2, 3]) }]).vips);
    const after = groupPools(balancerSpec([{ name: 'web', ip: '10.0.1.100', port: 80, backends: backends([1, 2, 4]) }]).vips);
    expect(after[0].id).toBe(before[0].id);
    expect(after[0].key).not.toBe(before[0].key);
  });

  /** 100 VIPs a00…a99 over the same backends; `weightsOf` gives a VIP other weights, or null to leave it out. */
  const shared = (weightsOf: (name: string) => number[] | undefined | null = () => undefined) =>
    balancerSpec(
      Array.from({ length: 100 }, (_, i) => {
        const name = `a${String(i).padStart(2, '0')}`;
        const weights = weightsOf(name);
        return weights === null ? [] : [{ name, ip: `10.0.2.${i + 1}`, port: 80, backends: backends(weights) }];
      }).flat(),
    );

  test.each([
    ['the first VIP by name', 'a00'],
    ['a VIP in the middle', 'a50'],
  ])('GIVEN %s of a shared pool given weights of its own WHEN grouped again THEN the shared pool keeps its id and only that VIP points elsewhere', (_, odd) => {
    const before = shared();
    const after = shared((name) => (name === odd ? [5, 1, 1] : undefined));
    const [pool] = groupPools(before.vips);
    const big = groupPools(after.vips).find((p) => p.vips.length === 99)!;
    const alone = groupPools(after.vips).find((p) => p.vips.length === 1)!;
    expect(alone.vips).toEqual([odd]);
    expect(big.id).toBe(pool.id);
    expect(alone.id).not.toBe(pool.id);
    // the table: only that VIP's own elements differ
    const owned = (spec: typeof before) =>
      new Map(
        buildBalancerTable(spec, factsFor(spec)).maps.flatMap((m) =>
          m.elements.filter((e) => e.vip !== undefined).map((e) => [`${m.name} ${e.text}`, e.vip!] as const),
        ),
      );
    const [a, b] = [owned(before), owned(after)];
    const changed = new Set([...a.keys()].filter((k) => !b.has(k)).map((k) => a.get(k)));
    for (const k of b.keys()) if (!a.has(k)) changed.add(b.get(k));
    expect([...changed]).toEqual([odd]);
  });

  test.each([0x42710900, 0x00010002, 0xfffffffe, 0x594bd9ef])('GIVEN pool id %i WHEN written as a classid and read back THEN it is the same id', (id) => {
    expect(poolIdOfClassid(poolClassid(id))).toBe(id);
  });

  test('GIVEN a pool of 100 VIPs WHEN reviewed THEN its section is keyed by its id and its comment counts the VIPs and names five', () => {
    const spec = shared();
    const [pool] = groupPools(spec.vips);
    const section = renderBalancerReview(spec, factsFor(spec))[`pool:${poolName(pool.id)}`];
    expect(section.split('\n')[0]).toMatch(/^# pool [0-9a-f]+:[0-9a-f]+ of 100 VIPs \(a00, a01, a02, a03, … a99\): weighted-round-robin over be1 /);
  });

  test('GIVEN the first VIP by name removed from a shared pool WHEN grouped again THEN the pool keeps its id', () => {
    const before = shared();
    const after = shared((name) => (name === 'a00' ? null : undefined));
    expect(after.vips).toHaveLength(99);
    expect(groupPools(after.vips)[0].id).toBe(groupPools(before.vips)[0].id);
  });

  test('GIVEN pools that differ only by weights WHEN grouped THEN the one with the most VIPs has the id of their shared content, whichever VIP comes first, and the others another each', () => {
    const base = groupPools(shared().vips)[0].id;
    // a00…a39 weighted 2:1:1 (40 VIPs), the other 60 as before: the 60 keep the id
    const split = groupPools(shared((name) => (name < 'a40' ? [2, 1, 1] : undefined)).vips);
    expect(split.find((p) => p.vips.length === 60)!.id).toBe(base);
    expect(split.find((p) => p.vips.length === 40)!.id).not.toBe(base);
    // the other way round: the 60 weighted 2:1:1 now have it
    const flipped = groupPools(shared((name) => (name < 'a60' ? [2, 1, 1] : undefined)).vips);
    expect(flipped.find((p) => p.vips.length === 60)!.id).toBe(base);
    expect(new Set(flipped.map((p) => p.id)).size).toBe(2);
  });
});

describe('grouping, against the key it stands for', () => {
  /** What a pool's key was written from, and how VIPs were grouped before (one JSON key per VIP). */
  const jsonKey = (vip: VipSpec) => {
    const checks = vipBackendChecks(vip);
    return JSON.stringify({
      family: vip.ip.includes(':') ? 6 : undefined,
      mode: vip.mode,
      protocol: vip.protocol,
      any: vip.port === '*',
      algorithm: vip.algorithm,
      hashTableSize: vip.algorithm === 'consistent-hash' ? (vip.hashTableSize ?? 251) : undefined,
      flowTimeoutSec: vip.flowTimeoutSec,
      backends: vip.backends.map((b, i) => ({ name: b.name, ip: b.ip, mac: b.mac, weight: b.weight, check: checks[i]?.key })),
    });
  };

  test('GIVEN VIPs that differ in each part of the key, or only elsewhere WHEN grouped THEN VIPs share a pool exactly when their keys are equal', () => {
    let seed = 7;
    const pick = <T>(items: readonly T[]): T => items[(seed = (seed * 1103515245 + 12345) % 2147483648) % items.length];
    const vips: VipSpec[] = Array.from({ length: 600 }, (_, i) => {
      const algorithm = pick(['weighted-round-robin', 'round-robin', 'consistent-hash', 'least-connections'] as const);
      const six = pick([false, false, true]);
      const bes = [0, 1, 2].slice(0, pick([2, 3])).map((k) => ({
        path: `t/v${i}/be${k}`,
        name: pick([`be${k}`, `be${k}`, 'other']),
        ip: six ? `fd00:1::${11 + k}` : `10.0.1.${11 + k}`,
        weight: pick([1, 1, 2, 0]),
        ...(pick([0, 0, 1]) ? { mac: `52:54:00:00:00:1${k}` } : {}),
        ...(pick([0, 0, 0, 1]) ? { healthCheck: { kind: 'tcp' as const, port: 80, intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2 } } : {}),
      }));
      return {
        path: `t/v${i}`,
        name: `v${String(i).padStart(3, '0')}`,
        ip: six ? `fd00:2::${i + 1}` : formatIpv4(0x0a020000 + i + 1),
        port: pick([80, 80, '*'] as const),
        protocol: pick(['tcp', 'tcp', 'udp'] as const),
        mode: pick(['l2', 'l2', 'l3'] as const),
        algorithm,
        flowTimeoutSec: pick([300, 300, 30]),
        ...(algorithm === 'consistent-hash' && pick([0, 1]) ? { hashTableSize: 503 } : {}),
        backends: bes,
      };
    });
    const pools = groupPools(vips);
    const byName = new Map(vips.map((v) => [v.name, v]));
    const expected = new Map<string, string[]>();
    for (const v of vips) expected.set(jsonKey(v), [...(expected.get(jsonKey(v)) ?? []), v.name]);
    expect(pools.length).toBe(expected.size);
    expect(pools.length).toBeGreaterThan(50);
    for (const pool of pools) {
      expect(pool.key).toBe(jsonKey(byName.get(pool.vips[0])!));
      expect(pool.vips).toEqual([...expected.get(pool.key)!].sort());
      expect(pool.managed).toBe(
        pool.vips.some((name) => LEAST_CONNECTIONS.includes(byName.get(name)!.algorithm) || vipBackendChecks(byName.get(name)!).some(Boolean)),
      );
    }
    const spec = balancerSpec([{ name: 'web', ip: '10.0.1.100', port: 80, backends: backends() }]);
    expect(balancerNeedsRuntime({ ...spec, vips })).toBe(pools.some((p) => p.managed));
    expect(balancerNeedsRuntime({ ...spec, vips: vips.filter((v) => !pools.find((p) => p.vips.includes(v.name))!.managed) })).toBe(false);
  });
});

describe('managed pools (least connections)', () => {
  const pool = (algorithm: 'least-connections' | 'weighted-least-connections', weights: number[]): Pool =>
    groupPools(balancerSpec([{ name: 'lc', ip: '10.0.1.100', port: 80, algorithm, backends: backends(weights) }]).vips)[0];

  test.each([
    ['least-connections', [1, 2, 3], 120, { be1: 40, be2: 40, be3: 40 }],
    ['weighted-least-connections', [1, 2, 3], 120, { be1: 20, be2: 40, be3: 60 }],
    ['weighted-least-connections', [1, 2], 120, { be1: 40, be2: 80 }],
    ['weighted-least-connections', [7, 0, 4], 121, { be1: 77, be3: 44 }],
  ] as const)('GIVEN %s with weights %j WHEN its slots are computed THEN %d slots split exactly by weight', (algorithm, weights, slots, split) => {
    const p = pool(algorithm, [...weights]);
    expect(p.managed).toBe(true);
    expect(managedSlotCount(p)).toBe(slots);
    expect(count(poolSequence(p))).toEqual(split);
  });

  test('GIVEN a backend left out WHEN its slots are computed THEN the slot count stays and the others share it by weight', () => {
    const p = pool('weighted-least-connections', [1, 2, 3]);
    const withoutBe3 = poolSequence(p, { takes: (b: BackendSpec) => b.name !== 'be3' });
    expect(withoutBe3).toHaveLength(120);
    expect(count(withoutBe3)).toEqual({ be1: 40, be2: 80 });
  });

  test('GIVEN a weighted round robin VIP WHEN pooled THEN it is not managed and keeps one slot per weight unit', () => {
    const p = groupPools(balancerSpec([{ name: 'web', ip: '10.0.1.100', port: 80, backends: backends([1, 2, 3]) }]).vips)[0];
    expect(p.managed).toBe(false);
    expect(poolSequence(p)).toHaveLength(6);
  });
});

describe("the pool sync's table (managedOnly)", () => {
  const lcSpec = (count: number) =>
    balancerSpec(
      Array.from({ length: count }, (_, i) => ({
        name: `v${i}`,
        ip: formatIpv4(0x0a640000 + i),
        port: 80,
        algorithm: 'least-connections' as const,
        backends: backends(),
      })),
    );
  const medianMs = (build: () => unknown, runs: number) => {
    const times = Array.from({ length: runs }, () => {
      const started = performance.now();
      build();
      return performance.now() - started;
    }).sort((a, b) => a - b);
    return times[Math.floor(runs / 2)];
  };

  test('GIVEN 10,000 VIPs in one managed pool WHEN the runtime builds its table THEN it holds only the pool and costs what 4 VIPs cost', () => {
    const many = lcSpec(10_000);
    const few = lcSpec(4);
    const facts = factsFor(few);
    const manyPools = groupPools(many.vips);
    const fewPools = groupPools(few.vips);
    const build = (spec: typeof many, pools: Pool[]) => () => buildBalancerTable(spec, facts, [], undefined, { pools, managedOnly: true });
    expect(build(many, manyPools)()).toEqual(build(few, fewPools)());
    // a health change re-renders this at every transition: its cost must follow the pools, not the VIPs
    medianMs(build(many, manyPools), 5);
    medianMs(build(few, fewPools), 5);
    const ratio = medianMs(build(many, manyPools), 41) / medianMs(build(few, fewPools), 41);
    expect(ratio).toBeLessThan(4);
  });
});

describe('renderOwnedUpdate', () => {
  const spec = balancerSpec([
    { name: 'lc', ip: '10.0.1.100', port: 80, algorithm: 'weighted-least-connections', backends: backends([1, 1, 1]) },
    { name: 'web', ip: '10.0.1.101', port: 80, backends: backends([1, 2, 3]) },
  ]);
  const facts = factsFor(spec);
  const before = buildBalancerTable(spec, facts);
  const lc = groupPools(spec.vips).find((p) => p.vips.includes('lc'))!;
  const after = buildBalancerTable(spec, facts, [], { takes: (b, p) => p.id !== lc.id || b.name !== 'be2' });
  const owned = (e: { pool?: string }) => e.pool === poolName(lc.id);

  test("GIVEN one backend of a managed pool left out WHEN the update is rendered THEN it rewrites that pool's moved slots and its live set only", () => {
    const text = renderOwnedUpdate(before, after, owned)!;
    const statements = text.split('\n').filter((l) => /^(add|delete) /.test(l));
    expect(statements.every((l) => /^(delete|add) element netdev tula_dsr (slots_l2_rt|live_l2_rt) \{/.test(l))).toBe(true);
    expect(statements.some((l) => l.startsWith('delete element netdev tula_dsr live_l2_rt {'))).toBe(true);
    // nothing of the other VIP's pool, no chain, no flow map
    const webPool = groupPools(spec.vips).find((p) => p.vips.includes('web'))!;
    const classid = `${(webPool.id >>> 16).toString(16)}:${(webPool.id & 0xffff).toString(16)}`;
    expect(text).not.toContain(classid);
    expect(text).not.toMatch(/chain|flows_|closing_/);
  });

  test('GIVEN no change WHEN the update is rendered THEN it is empty', () => {
    expect(renderOwnedUpdate(before, before, owned)).toBe('');
  });

  test('GIVEN a change that needs a map the table lacks WHEN the update is rendered THEN it says a full reload is needed (null)', () => {
    const l3 = buildBalancerTable(
      balancerSpec([{ name: 'lc', ip: '10.0.1.100', port: 80, mode: 'l3', algorithm: 'weighted-least-connections', backends: backends([1, 1, 1]) }]),
      facts,
    );
    expect(renderOwnedUpdate(before, l3, () => true)).toBeNull();
  });
});
