/**
 * Rendering: snapshots of the rendered text (balancer rulesets in plan and reload form, backend host files), and
 * properties of the slot tables that the snapshots alone would not make obvious.
 */
import {
  ALGORITHMS,
  Algorithm,
  BalancerSpec,
  INTERFACE_PATTERN,
  MODES,
  NftTable,
  VipSpec,
  backendId,
  backendMark,
  fnv1a32,
  maglevTable,
  nftVipKey,
  DEFAULT_MAGLEV_SIZE,
  planBalancerHost,
  renderBackendHostReview,
  renderNftDeclarative,
  renderNftReload,
  tunnelName,
} from '../../model';
import {
  BACKEND_HOST_CASES,
  BALANCER_CASES,
  FRESH,
  SHRINK_BASE,
  SHRINK_NAME,
  VipInput,
  backends,
  balancerSpec,
  factsFor,
  renderBackendHostCase,
  renderBalancerCase,
  renderShrinkingReload,
  shrunkSpec,
} from '../support/render-fixtures';

// ---------------------------------------------------------------------------------------------------------------
// Helpers: read a VIP's slot table back out of the rendered table.

/** The classid of the slot pool a VIP points at. */
function poolOfVip(table: NftTable, vip: VipSpec): string {
  const map = table.maps.find((m) => m.name === `vip_pool_${vip.port === '*' ? 'any' : 'port'}${vip.ip.includes(':') ? '6' : ''}`)!;
  return map.elements.find((e) => e.text.startsWith(`${nftVipKey(vip)} : `))!.text.split(' : ')[1];
}

/** Backend names in slot order, as the VIP's pool sends them; throws unless slot numbers are exactly 0..n-1. */
function slotsOf(table: NftTable, spec: BalancerSpec, vipName: string): string[] {
  const vip = spec.vips.find((v) => v.name === vipName)!;
  const prefix = `${poolOfVip(table, vip)} . `;
  // a managed pool's slots are in the `_rt` map, the others' in the plain one
  const map = table.maps.find(
    (m) => (m.name === `slots_${vip.mode}` || m.name === `slots_${vip.mode}_rt`) && m.elements.some((e) => e.text.startsWith(prefix)),
  );
  if (!map) return [];
  const byValue = new Map(vip.backends.map((b) => [vip.mode === 'l2' ? `$mac_${backendId(b.ip)}` : `0x${backendMark(b.ip, spec)}`, b.name]));
  const slots: string[] = [];
  for (const element of map.elements.filter((e) => e.text.startsWith(prefix)).map((e) => e.text)) {
    const m = /^(\d+) : (\S+)$/.exec(element.slice(prefix.length));
    if (!m) throw new Error(`unexpected slot element ${element}`);
    if (slots[Number(m[1])] !== undefined) throw new Error(`slot ${m[1]} of ${vipName} appears twice`);
    slots[Number(m[1])] = byValue.get(m[2]) ?? `<unknown ${m[2]}>`;
  }
  const holes = [...slots.keys()].filter((i) => slots[i] === undefined);
  if (holes.length) throw new Error(`slots ${holes.join(',')} of ${vipName} are missing`);
  return slots;
}

/** The `mod N` the VIP's scheduler chain uses to pick a slot (numgen or jhash), or null when it has none. */
function modulusOf(table: NftTable, spec: BalancerSpec, vipName: string): number | null {
  const vip = spec.vips.find((v) => v.name === vipName)!;
  const dispatch = table.maps.find((m) => m.name === 'pool_chain')!;
  const element = dispatch.elements.find((e) => e.text.startsWith(`${poolOfVip(table, vip)} : goto `))!.text;
  const chain = table.chains.find((c) => c.name === element.split(' : goto ')[1])!;
  // 2^32-1 is the full-range jhash of the IPv6 flow key (FLOW6_SEEDS), not a slot choice
  const mods = new Set(chain.rules.flatMap((r) => [...r.matchAll(/ mod (\d+)/g)].map((m) => Number(m[1]))).filter((m) => m !== 0xffffffff));
  if (mods.size > 1) throw new Error(`chain ${chain.name} uses several moduli: ${[...mods].join(', ')}`);
  return mods.size ? [...mods][0] : null;
}

const count = (items: readonly string[]) => items.reduce<Record<string, number>>((acc, x) => ({ ...acc, [x]: (acc[x] ?? 0) + 1 }), {});

function oneVip(algorithm: Algorithm, weights: readonly number[], extra: Partial<VipInput> = {}): BalancerSpec {
  return balancerSpec([{ name: 'v', ip: '10.0.1.100', port: 80, algorithm, backends: backends(weights), ...extra }]);
}

/** Deterministic stand-ins for the kernel's flow hashes. */
const FLOW_HASHES = Array.from({ length: 20000 }, (_, i) => fnv1a32(`flow ${i}`));

/** The backend each simulated flow lands on: hash mod the chain's modulus, then the slot map. */
function landing(spec: BalancerSpec, vipName = 'v'): string[] {
  const table = planBalancerHost(spec, factsFor(spec)).table;
  const slots = slotsOf(table, spec, vipName);
  const modulus = modulusOf(table, spec, vipName)!;
  expect(modulus).toBe(slots.length);
  return FLOW_HASHES.map((h) => slots[h % modulus]);
}

const moved = (a: readonly string[], b: readonly string[]) => a.filter((x, i) => x !== b[i]).length / a.length;

// ---------------------------------------------------------------------------------------------------------------

describe('balancer ruleset snapshots', () => {
  test.each(BALANCER_CASES.map((c) => [c.name, c.spec] as const))('GIVEN %s WHEN rendered THEN the plan and reload text match the snapshot', (name, spec) => {
    const out = renderBalancerCase(name, spec);
    expect(out.plan).toMatchSnapshot('plan (declarative, apply-time MACs pending)');
    expect(out.reload).toMatchSnapshot('reload (in-place transaction, fresh host)');
  });

  test('GIVEN a loaded balancer WHEN a VIP is removed THEN the reload deletes its stale objects (snapshot)', () => {
    expect(renderShrinkingReload(SHRINK_BASE.name, SHRINK_BASE.spec, shrunkSpec(), SHRINK_NAME)).toMatchSnapshot();
  });
});

describe('backend host file snapshots', () => {
  test.each(BACKEND_HOST_CASES.map((c) => [c.name, c.spec] as const))(
    'GIVEN %s WHEN planned THEN every file and the review text match the snapshot',
    (name, spec) => {
      const plan = renderBackendHostCase(name, spec);
      for (const file of plan.files) expect(`${file.path} (mode ${file.mode})\n${file.content}`).toMatchSnapshot(file.path);
      expect(plan.mssClamp?.ruleset ?? '(no MSS clamp)').toMatchSnapshot('mss clamp ruleset');
      expect(renderBackendHostReview(spec)).toMatchSnapshot('review text (plan triggers)');
    },
  );

  test('GIVEN an L2-only host WHEN planned THEN there is no tunnel, no rp_filter change and no MSS clamp', () => {
    const plan = renderBackendHostCase(BACKEND_HOST_CASES[0].name, BACKEND_HOST_CASES[0].spec);
    expect(plan.tunnel).toBeNull();
    expect(plan.mssClamp).toBeNull();
    expect(plan.sysctls.map((s) => `${s.key}=${s.value}`)).toEqual(['net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2']);
    expect(plan.addresses.map((a) => `${a.ip}/${a.prefix} ${a.dev}`)).toEqual(['10.0.1.100/32 lo', '10.0.1.101/32 lo']);
  });

  test('GIVEN an L3 host WHEN its boot script runs THEN ARP sysctls come before any VIP, and the tunnel before its sysctl and addresses', () => {
    const plan = renderBackendHostCase(BACKEND_HOST_CASES[1].name, BACKEND_HOST_CASES[1].spec);
    const script = plan.files.find((f) => f.path.endsWith('backend-up.sh'))!.content.split('\n');
    const at = (re: RegExp) => {
      const i = script.findIndex((l) => re.test(l));
      if (i < 0) throw new Error(`no line matches ${re}`);
      return i;
    };
    const firstAddress = at(/^\t'addr replace /);
    expect(at(/^sysctl -q -p \/etc\/sysctl.d\/99-tula-dsr.conf$/)).toBeLessThan(firstAddress);
    expect(at(/^ip link show ipip0 .* \|\| ip link add ipip0 type ipip local 10\.0\.1\.11 remote any$/)).toBeLessThan(
      at(/^sysctl -q -w 'net.ipv4.conf.ipip0.rp_filter=2'$/),
    );
    expect(at(/^sysctl -q -w 'net.ipv4.conf.ipip0.rp_filter=2'$/)).toBeLessThan(firstAddress);
    expect(at(/^nft -f \/etc\/tula-dsr\/backend-mss.nft$/)).toBeGreaterThan(firstAddress);
    // Each L3 VIP is on lo and on ipip0; the L2 VIP only on lo.
    expect(plan.addresses.map((a) => `${a.ip} ${a.dev}`)).toEqual([
      '10.0.1.100 lo',
      '10.0.2.100 lo',
      '10.0.2.101 lo',
      '10.0.2.102 lo',
      '10.0.2.100 ipip0',
      '10.0.2.101 ipip0',
      '10.0.2.102 ipip0',
    ]);
    // One clamp rule per MSS value, VIPs grouped under it.
    expect(plan.mssClamp!.ruleset).toContain(
      'ip saddr { 10.0.2.101 } tcp flags & (syn|ack) == syn|ack tcp option maxseg size > 1400 tcp option maxseg size set 1400',
    );
    expect(plan.mssClamp!.ruleset).toContain(
      'ip saddr { 10.0.2.100, 10.0.2.102 } tcp flags & (syn|ack) == syn|ack tcp option maxseg size > 1440 tcp option maxseg size set 1440',
    );
  });

  test('GIVEN persist = false WHEN planned THEN no file and no unit are written', () => {
    const plan = renderBackendHostCase(BACKEND_HOST_CASES[2].name, BACKEND_HOST_CASES[2].spec);
    expect(plan.files).toEqual([]);
    expect(plan.unit).toBeNull();
    expect(plan.mssClamp).not.toBeNull();
  });
});

describe('slot tables', () => {
  test.each(MODES.flatMap((mode) => ['weighted-round-robin', 'source-hash'].map((a) => [mode, a as Algorithm] as const)))(
    'GIVEN %s %s with weights 1:2:3 WHEN rendered THEN the table has 6 slots split exactly 1/2/3',
    (mode, algorithm) => {
      const spec = oneVip(algorithm, [1, 2, 3], { mode });
      const table = planBalancerHost(spec, factsFor(spec)).table;
      const slots = slotsOf(table, spec, 'v');
      expect(slots).toHaveLength(6);
      expect(count(slots)).toEqual({ be1: 1, be2: 2, be3: 3 });
      expect(modulusOf(table, spec, 'v')).toBe(6);
    },
  );

  test.each([[[1, 1]], [[5, 0, 1]], [[3, 7]], [[1000, 1]]])(
    'GIVEN weighted-round-robin with weights %j WHEN rendered THEN each backend gets exactly its weight in slots',
    (weights) => {
      const spec = oneVip('weighted-round-robin', weights);
      const slots = slotsOf(planBalancerHost(spec).table, spec, 'v');
      const expected = Object.fromEntries(weights.map((w, i) => [`be${i + 1}`, w]).filter(([, w]) => (w as number) > 0));
      expect(count(slots)).toEqual(expected);
    },
  );

  test('GIVEN weights 1:2:3 WHEN weighted-round-robin THEN consecutive slots interleave backends (smooth), not a b b c c c', () => {
    const spec = oneVip('weighted-round-robin', [1, 2, 3]);
    const slots = slotsOf(planBalancerHost(spec).table, spec, 'v');
    expect(slots.some((s, i) => i > 0 && s === slots[i - 1] && s === slots[i + 1])).toBe(false);
  });

  test.each(MODES)('GIVEN %s round-robin with weights 1:2:3 WHEN rendered THEN weights are ignored: one slot per backend', (mode) => {
    const spec = oneVip('round-robin', [1, 2, 3], { mode });
    const table = planBalancerHost(spec, factsFor(spec)).table;
    expect(count(slotsOf(table, spec, 'v'))).toEqual({ be1: 1, be2: 1, be3: 1 });
    expect(modulusOf(table, spec, 'v')).toBe(3);
  });

  test.each(MODES.flatMap((mode) => ALGORITHMS.map((a) => [mode, a] as const)))(
    'GIVEN %s %s with a drained backend (weight 0) WHEN rendered THEN it never appears in the slots',
    (mode, algorithm) => {
      const spec = oneVip(algorithm, [2, 0, 1], { mode });
      const table = planBalancerHost(spec, factsFor(spec)).table;
      const slots = slotsOf(table, spec, 'v');
      expect(slots.length).toBeGreaterThan(0);
      expect(slots).not.toContain('be2');
      expect(new Set(slots)).toEqual(new Set(['be1', 'be3']));
    },
  );

  test.each(MODES)('GIVEN %s with a drained backend WHEN rendered THEN established flows can still reach it (MAC define / tunnel and counter stay)', (mode) => {
    const spec = oneVip('weighted-round-robin', [1, 0], { mode });
    const plan = planBalancerHost(spec, factsFor(spec));
    const id = backendId('10.0.1.12');
    expect(plan.table.counters).toContain(`be_${id}`);
    if (mode === 'l2') {
      expect(plan.table.defines.map((d) => d.name)).toContain(`mac_${id}`);
    } else {
      expect(plan.table.maps.find((m) => m.name === 'l3_backends')!.elements.map((e) => e.text)).toContain(`0x${id} : goto be_${id}`);
      expect(plan.tunnels.map((t) => t.remote)).toContain('10.0.1.12');
    }
  });

  test('GIVEN every backend drained WHEN rendered THEN the VIP has no slots and no scheduler rule, only the established-flow rule', () => {
    const spec = oneVip('weighted-round-robin', [0, 0]);
    const table = planBalancerHost(spec, factsFor(spec)).table;
    expect(slotsOf(table, spec, 'v')).toEqual([]);
    expect(modulusOf(table, spec, 'v')).toBeNull();
  });

  test.each(BALANCER_CASES.map((c) => [c.name, c.spec] as const))(
    "GIVEN %s WHEN rendered THEN every VIP's chain picks slots with mod N where N is exactly its slot count",
    (_name, spec) => {
      const table = planBalancerHost(spec, factsFor(spec)).table;
      for (const vip of spec.vips) {
        const slots = slotsOf(table, spec, vip.name);
        expect([vip.name, modulusOf(table, spec, vip.name)]).toEqual([vip.name, slots.length === 0 ? null : slots.length]);
      }
    },
  );
});

describe('determinism and seeds', () => {
  test.each(BALANCER_CASES.map((c) => [c.name, c.spec] as const))('GIVEN %s WHEN rendered twice THEN the text is identical', (_name, spec) => {
    const once = planBalancerHost(spec, factsFor(spec)).table;
    const twice = planBalancerHost(structuredClone(spec), factsFor(spec)).table;
    expect(renderNftDeclarative(twice)).toBe(renderNftDeclarative(once));
    expect(renderNftReload(twice, FRESH)).toBe(renderNftReload(once, FRESH));
  });

  test('GIVEN the same VIPs in another order WHEN rendered THEN the text is identical (stable ordering)', () => {
    const spec = BALANCER_CASES.find((c) => c.name.startsWith('l2 all-ports'))!.spec;
    const reversed = { ...spec, vips: [...spec.vips].reverse() };
    expect(renderNftDeclarative(planBalancerHost(reversed).table)).toBe(renderNftDeclarative(planBalancerHost(spec).table));
  });

  test('GIVEN randomness is unavailable WHEN every case is rendered THEN rendering never asks for it', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const crypto = require('node:crypto');
    const spies = [
      jest.spyOn(Math, 'random').mockImplementation(() => {
        throw new Error('Math.random called');
      }),
      jest.spyOn(crypto, 'randomBytes').mockImplementation(() => {
        throw new Error('randomBytes called');
      }),
      jest.spyOn(crypto, 'randomInt').mockImplementation(() => {
        throw new Error('randomInt called');
      }),
      jest.spyOn(crypto, 'randomUUID').mockImplementation(() => {
        throw new Error('randomUUID called');
      }),
    ];
    try {
      for (const c of BALANCER_CASES) renderNftReload(planBalancerHost(c.spec, factsFor(c.spec)).table, FRESH);
    } finally {
      spies.forEach((s) => s.mockRestore());
    }
  });

  const seedsOf = (text: string) => [...text.matchAll(/jhash [^\n]*? mod \d+ seed (0x[0-9a-f]{8})/g)].map((m) => m[1]);

  test('GIVEN any rendered ruleset WHEN it hashes THEN every jhash carries a pinned seed', () => {
    for (const c of BALANCER_CASES) {
      const text = renderNftDeclarative(planBalancerHost(c.spec, factsFor(c.spec)).table);
      const hashes = text.match(/jhash /g)?.length ?? 0;
      expect([c.name, seedsOf(text).length]).toEqual([c.name, hashes]);
    }
  });

  test('GIVEN a fresh copy of the model modules WHEN the same spec is rendered THEN the seeds are the same (derived, not random)', () => {
    const spec = BALANCER_CASES.find((c) => c.name === 'l2 source-hash')!.spec;
    const seeds = seedsOf(renderNftDeclarative(planBalancerHost(spec).table));
    let fresh: string[] = [];
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const model = require('../../model') as typeof import('../../model');
      fresh = seedsOf(model.renderNftDeclarative(model.planBalancerHost(spec).table));
    });
    expect(seeds.length).toBeGreaterThan(0);
    expect(fresh).toEqual(seeds);
  });

  test('GIVEN two scheduler shapes WHEN rendered THEN their seeds differ, and adding a VIP of the same shape keeps the existing seed', () => {
    const sh = BALANCER_CASES.find((c) => c.name === 'l2 source-hash')!.spec;
    const [tcpSeed, udpSeed] = [...new Set(seedsOf(renderNftDeclarative(planBalancerHost(sh).table)))];
    expect(tcpSeed).toBeDefined();
    expect(udpSeed).toBeDefined();
    expect(tcpSeed).not.toBe(udpSeed);
    const more = balancerSpec([...sh.vips, { ...sh.vips[0], name: 'another', ip: '10.0.1.150', backends: sh.vips[0].backends }]);
    expect(new Set(seedsOf(renderNftDeclarative(planBalancerHost(more).table)))).toEqual(new Set([tcpSeed, udpSeed]));
  });
});

describe('tunnel names', () => {
  test.each(['0.0.0.1', '10.0.1.11', '192.168.77.200', '223.255.255.254', '255.255.255.255'])(
    'GIVEN backend %s WHEN named THEN the tunnel name is a valid interface name of at most 15 characters',
    (ip) => {
      const name = tunnelName(ip);
      expect(name.length).toBeLessThanOrEqual(15);
      expect(name).toMatch(INTERFACE_PATTERN);
      expect(tunnelName(ip)).toBe(name);
    },
  );

  test('GIVEN 5,000 distinct backend addresses WHEN named THEN every tunnel name is distinct', () => {
    const ips = Array.from({ length: 5000 }, (_, i) => {
      const h = fnv1a32(`ip${i}`);
      return `${((h >>> 24) % 223) + 1}.${(h >>> 16) & 255}.${(h >>> 8) & 255}.${h & 255}`;
    });
    const unique = new Set(ips);
    expect(new Set([...unique].map((ip) => tunnelName(ip))).size).toBe(unique.size);
  });

  test('GIVEN every L3 case WHEN rendered THEN each device in the ruleset is one of the planned tunnels, at most 15 characters', () => {
    for (const c of BALANCER_CASES.filter((x) => x.spec.vips.some((v) => v.mode === 'l3'))) {
      const plan = planBalancerHost(c.spec, factsFor(c.spec));
      const devices = [...renderNftDeclarative(plan.table).matchAll(/fwd ip6? to \S+ device "([^"]+)"/g)].map((m) => m[1]);
      expect(devices.length).toBeGreaterThan(0);
      expect(new Set(devices)).toEqual(new Set(plan.tunnels.map((t) => t.name)));
      for (const d of devices) expect(d.length).toBeLessThanOrEqual(15);
    }
  });
});

describe('consistent hashing (Maglev) versus mod-N', () => {
  const ten = Array.from({ length: 10 }, (_, i) => ({ name: `be${i}`, weight: 1 }));
  const size = DEFAULT_MAGLEV_SIZE;
  const table = maglevTable(ten, size);
  const modN = (n: number) => FLOW_HASHES.map((h) => `be${h % n}`);
  const viaTable = (t: readonly string[]) => FLOW_HASHES.map((h) => t[h % t.length]);

  test('GIVEN 10 backends WHEN the table is built THEN its size is prime and every backend holds about a tenth of it', () => {
    expect(Array.from({ length: Math.floor(Math.sqrt(size)) - 1 }, (_, i) => i + 2).some((d) => size % d === 0)).toBe(false);
    for (const [, slots] of Object.entries(count(table))) expect(Math.abs(slots / size - 0.1)).toBeLessThan(0.02);
  });

  test.each(ten.map((b, i) => [b.name, i] as const))(
    'GIVEN 10 backends WHEN %s is removed THEN at most 15%% of flows move, while mod-N moves about 90%%',
    (_name, i) => {
      const after = viaTable(
        maglevTable(
          ten.filter((_, j) => j !== i),
          size,
        ),
      );
      const maglevMoved = moved(viaTable(table), after);
      // mod-N with the removed backend's position filled by renumbering the rest.
      const survivors = ten.filter((_, j) => j !== i).map((b) => b.name);
      const modNAfter = FLOW_HASHES.map((h) => survivors[h % 9]);
      const modNMoved = moved(modN(10), modNAfter);
      expect(maglevMoved).toBeLessThanOrEqual(0.15);
      expect(maglevMoved).toBeGreaterThanOrEqual(0.09); // its own tenth has to move
      expect(modNMoved).toBeGreaterThan(0.8);
      expect(maglevMoved * 5).toBeLessThan(modNMoved);
    },
  );

  test('GIVEN 10 backends WHEN an 11th is added at the same table size THEN at most 15% of flows move (mod-N: about 90%)', () => {
    const after = viaTable(maglevTable([...ten, { name: 'be10', weight: 1 }], size));
    expect(moved(viaTable(table), after)).toBeLessThanOrEqual(0.15);
    expect(moved(modN(10), modN(11))).toBeGreaterThan(0.8);
  });

  const tenBackends = backends(Array(10).fill(1), 11);
  const chVip = (bes: VipInput['backends']) => balancerSpec([{ name: 'v', ip: '10.0.1.100', port: 80, algorithm: 'consistent-hash', backends: bes }]);

  test.each(MODES)(
    'GIVEN a rendered %s consistent-hash VIP with 10 backends WHEN one is removed THEN at most 15%% of simulated flows land elsewhere',
    (mode) => {
      const spec = (bes: VipInput['backends']) => balancerSpec([{ name: 'v', ip: '10.0.1.100', port: 80, mode, algorithm: 'consistent-hash', backends: bes }]);
      const before = landing(spec(tenBackends));
      expect(moved(before, landing(spec(tenBackends.filter((b) => b.name !== 'be4'))))).toBeLessThanOrEqual(0.15);
    },
  );

  test('GIVEN a rendered consistent-hash VIP with 3 backends WHEN one is drained (weight 0) THEN its flows move and hardly any other', () => {
    const three = backends([1, 1, 1]);
    const before = landing(chVip(three));
    const after = landing(chVip(three.map((b) => (b.name === 'be2' ? { ...b, weight: 0 } : b))));
    const ownShare = before.filter((b) => b === 'be2').length / before.length;
    expect(after).not.toContain('be2');
    // Its own third must move; Maglev moves only a few more (a table-size change would move about two thirds).
    expect(moved(before, after) - ownShare).toBeLessThanOrEqual(0.05);
  });

  test('GIVEN a rendered consistent-hash VIP with 4 backends WHEN a 5th is added THEN at most 25% of simulated flows land elsewhere', () => {
    const five = backends([1, 1, 1, 1, 1]);
    expect(moved(landing(chVip(five.slice(0, 4))), landing(chVip(five)))).toBeLessThanOrEqual(0.25);
  });

  // The table size is fixed per VIP (hashTableSize, default 1021): a size that followed the backend count would
  // change `jhash … mod N` for every flow when an 11th backend arrives.
  test('GIVEN a rendered consistent-hash VIP with 10 backends WHEN an 11th is added THEN at most 15% of simulated flows land elsewhere', () => {
    const eleven = backends(Array(11).fill(1), 11);
    expect(moved(landing(chVip(eleven.slice(0, 10))), landing(chVip(eleven)))).toBeLessThanOrEqual(0.15);
  });
});
