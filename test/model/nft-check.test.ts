/**
 * Every ruleset the suite renders (see test/support/render-fixtures.ts) goes through the REAL `nft -c -f` inside a
 * throwaway network namespace, with veths standing in for the interfaces and IPIP tunnels the rulesets name (the
 * build kernel has no ipip or dummy module). Then the reload form is really loaded: twice in a row, and once more
 * without a VIP, which must delete the stale objects while the flow map keeps its entries.
 *
 * Needs root (network namespaces, nftables). Without it this file FAILS: it never skips silently.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseKeptElements } from '../../agent/facts/parsers';
import { BALANCER_TABLE, BalancerSpec, NftTableFacts, VIP_STATS_SETS, parseNftCounters, planBalancerHost, renderNftReload } from '../../model';
import { BALANCER_CASES, RenderedRuleset, SHRINK_BASE, SHRINK_NAME, allRenderedRulesets, factsFor, macOf, shrunkSpec } from '../support/render-fixtures';

const suffix = randomBytes(4).toString('hex');
const CHECK_NS = `tula-t-${suffix}`;
const LIVE_NS = `tula-t-${suffix}-l`;
const TABLE = `netdev ${BALANCER_TABLE}`;
const created: string[] = [];
let workDir = '';
let rulesets: RenderedRuleset[] = [];

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(argv: string[], input?: string): Run {
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  if (r.error) throw new Error(`${argv.join(' ')}: ${r.error.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function mustRun(argv: string[]): Run {
  const r = run(argv);
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}\n${r.stderr}${r.stdout}`);
  return r;
}

const nft = (ns: string, ...args: string[]) => run(['ip', 'netns', 'exec', ns, 'nft', ...args]);

let fileCount = 0;
/** nft -f on a file, so that errors name a line; returns the result with the ruleset name for messages. */
function nftFile(ns: string, text: string, check: boolean): Run {
  const file = path.join(workDir, `ruleset-${++fileCount}.nft`);
  writeFileSync(file, text);
  return nft(ns, ...(check ? ['-c'] : []), '-f', file);
}

function expectNftOk(what: string, r: Run): void {
  // On failure, show which ruleset and nft's own diagnostics (file:line and a caret under the bad token).
  expect({ what, status: r.status, stderr: r.stderr }).toEqual({ what, status: 0, stderr: '' });
}

/** Interfaces a ruleset names: ingress hook devices, `fwd to` and tunnel devices. */
function devicesIn(text: string): string[] {
  return [...text.matchAll(/(?:device|fwd to) "([^"]+)"/g)].map((m) => m[1]);
}

function addVeths(ns: string, names: Iterable<string>): void {
  let i = 0;
  for (const name of names) mustRun(['ip', '-n', ns, 'link', 'add', name, 'type', 'veth', 'peer', 'name', `tp${suffix}${i++}`.slice(0, 15)]);
}

function addNamespace(ns: string): void {
  mustRun(['ip', 'netns', 'add', ns]);
  created.push(ns);
}

beforeAll(() => {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error(
      'nft-check.test.ts MUST run as root: it creates network namespaces and loads nftables rulesets with the real nft. ' +
        'It does not skip: run `sudo npx jest test/model/nft-check.test.ts --runInBand` (or the whole suite as root, as CI does).',
    );
  }
  for (const tool of [
    ['nft', '--version'],
    ['ip', '-V'],
  ]) {
    const r = spawnSync(tool[0], [tool[1]], { encoding: 'utf8' });
    if (r.error || r.status !== 0)
      throw new Error(`nft-check.test.ts needs \`${tool[0]}\` on PATH (Debian: nftables, iproute2): ${r.error?.message ?? r.stderr}`);
  }
  workDir = mkdtempSync(path.join(os.tmpdir(), 'tula-nft-check-'));
  rulesets = allRenderedRulesets();
  addNamespace(CHECK_NS);
  addVeths(CHECK_NS, new Set(rulesets.flatMap((r) => devicesIn(r.text))));
  addNamespace(LIVE_NS);
});

afterAll(() => {
  const failures: string[] = [];
  for (const ns of created.reverse()) {
    const r = run(['ip', 'netns', 'del', ns]);
    if (r.status !== 0) failures.push(`ip netns del ${ns}: ${r.stderr}`);
  }
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  if (failures.length) throw new Error(failures.join('\n'));
});

describe('every rendered ruleset passes the real `nft -c -f`', () => {
  test('GIVEN the fixture registry WHEN collected THEN it holds every balancer case in plan, boot and reload form, the MSS clamps, the construct stacks and the shrinking reload', () => {
    const names = rulesets.map((r) => r.name);
    for (const c of BALANCER_CASES) expect(names).toEqual(expect.arrayContaining([`${c.name} | plan`, `${c.name} | boot`, `${c.name} | reload`]));
    expect(names.filter((n) => n.endsWith('| mss clamp'))).toHaveLength(3);
    expect(names.filter((n) => n.startsWith('example stack') || n.startsWith('mixed stack'))).toHaveLength(4);
    expect(names).toContain(SHRINK_NAME);
  });

  test('GIVEN every ruleset WHEN checked with nft -c in the namespace THEN each one is accepted', () => {
    // One test over the whole registry (it is built in beforeAll); every failure is listed, not only the first.
    const failures = rulesets
      .filter((r) => !r.after)
      .map((r) => ({ name: r.name, result: nftFile(CHECK_NS, r.text, true) }))
      .filter((x) => x.result.status !== 0 || x.result.stderr !== '')
      .map((x) => `${x.name}: exit ${x.result.status}\n${x.result.stderr}`);
    expect(failures).toEqual([]);
    expect(rulesets.filter((r) => !r.after).length).toBeGreaterThanOrEqual(BALANCER_CASES.length * 3 + 6);
  });

  test('GIVEN a ruleset with a typo WHEN checked THEN nft -c rejects it (the check can fail)', () => {
    const broken = rulesets.find((r) => r.name.endsWith('| reload'))!.text.replace('vmap @pool_chain', 'vmap @no_such_map');
    const r = nftFile(CHECK_NS, broken, true);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/no_such_map/);
  });

  test('GIVEN the interface is missing WHEN a ruleset is checked THEN nft -c rejects it (the veths are what make it pass)', () => {
    const r = nftFile(CHECK_NS, rulesets.find((x) => x.name.endsWith('| boot'))!.text.replaceAll('"eth0"', '"nosuchif0"'), true);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Interface does not exist|No such file or directory/);
  });
});

// -----------------------------------------------------------------------------------------------------------------

/**
 * What exists in the live table, as the agent would gather it (names from JSON; hooks from the text listing; the
 * element keys of the VIP statistics sets and the values of named VIP counters with the agent's parsers).
 */
function liveFacts(ns: string): NftTableFacts {
  const listed = nft(ns, '-j', 'list', 'table', ...TABLE.split(' '));
  if (listed.status !== 0) return { exists: false, counters: [], maps: [], sets: [], chains: [], sizes: {}, hooks: {} };
  const objects = (JSON.parse(listed.stdout) as { nftables: Record<string, { name: string; size?: number }>[] }).nftables;
  const names = (kind: string) => objects.filter((o) => o[kind]).map((o) => o[kind].name);
  // nft 1.0.6's JSON omits the device of a netdev base chain, so the hook clause comes from the text listing.
  const hooks: Record<string, string> = {};
  let chain = '';
  for (const line of nft(ns, 'list', 'table', ...TABLE.split(' ')).stdout.split('\n')) {
    const c = /^\tchain (\S+) \{$/.exec(line);
    if (c) chain = c[1];
    const h = /^\t\t(type \S+ hook .*)$/.exec(line);
    if (h && chain) hooks[chain] = h[1];
  }
  const sizes: Record<string, number> = {};
  for (const o of objects) for (const kind of ['map', 'set']) if (o[kind]?.size !== undefined) sizes[o[kind].name] = o[kind].size!;
  const listedElements = parseKeptElements(nft(ns, '-s', 'list', 'table', ...TABLE.split(' ')).stdout);
  const elements = Object.fromEntries(Object.entries(listedElements).filter(([name]) => VIP_STATS_SETS.includes(name)));
  const counterValues = Object.fromEntries(
    [...parseNftCounters(nft(ns, 'list', 'counters', 'table', ...TABLE.split(' ')).stdout)].filter(([name]) => name.startsWith('vip_')),
  );
  return { exists: true, counters: names('counter'), maps: names('map'), sets: names('set'), chains: names('chain'), sizes, hooks, elements, counterValues };
}

function listTable(ns: string): string {
  // flow entries count down by themselves
  return mustRun(['ip', 'netns', 'exec', ns, 'nft', 'list', 'table', ...TABLE.split(' ')]).stdout.replace(/ expires \S+ :/g, ' :');
}

const reloadFor = (spec: BalancerSpec, facts: NftTableFacts) => renderNftReload(planBalancerHost(spec, factsFor(spec)).table, facts);

/** A flow entry, as the packet path would add it, in the tcp flow map of the base case (open, or closing). */
function addFlow(ns: string, map: 'flows_l2_tcp' | 'closing_l2_tcp' = 'flows_l2_tcp', sport = 40000): void {
  const backend = SHRINK_BASE.spec.vips[0].backends[0].ip;
  mustRun([
    'ip',
    'netns',
    'exec',
    ns,
    'nft',
    'add',
    'element',
    ...TABLE.split(' '),
    map,
    `{ 192.0.2.7 . ${sport} . 10.0.1.100 . 80 timeout 600s : ${macOf(backend)} }`,
  ]);
}

describe('the reload form, really loaded', () => {
  beforeAll(() => {
    addVeths(LIVE_NS, ['eth0', 'eth1']);
  });

  test('GIVEN no table WHEN the reload is loaded twice in a row THEN both loads succeed and the second changes nothing', () => {
    const first = reloadFor(SHRINK_BASE.spec, liveFacts(LIVE_NS));
    expectNftOk('first load', nftFile(LIVE_NS, first, false));
    const afterFirst = listTable(LIVE_NS);
    addFlow(LIVE_NS);

    const facts = liveFacts(LIVE_NS);
    expect(facts.exists).toBe(true);
    expect(facts.hooks).toEqual({ ingress: 'type filter hook ingress device "eth0" priority -300; policy accept;' });
    addFlow(LIVE_NS, 'closing_l2_tcp', 40001);
    expectNftOk('second load', nftFile(LIVE_NS, reloadFor(SHRINK_BASE.spec, facts), false));
    const afterSecond = listTable(LIVE_NS);
    // The flows added in between, open and closing, survive the reload (dynamic maps are never flushed) ...
    expect(afterSecond).toContain('192.0.2.7 . 40000 . 10.0.1.100 . 80');
    expect(afterSecond).toContain('192.0.2.7 . 40001 . 10.0.1.100 . 80');
    // ... and apart from them the table is the same.
    const withoutFlows = (t: string) => t.replace(/\n\t\telements = \{ 192\.0\.2\.7[^}]*\}/g, '');
    expect(withoutFlows(afterSecond)).toBe(afterFirst);
  });

  test('GIVEN the loaded table WHEN the registered shrinking reload is checked against it THEN nft accepts it', () => {
    const shrink = rulesets.find((r) => r.name === SHRINK_NAME)!;
    expect(shrink.after).toBe(`${SHRINK_BASE.name} | reload`);
    expectNftOk(SHRINK_NAME, nftFile(LIVE_NS, shrink.text, true));
  });

  test('GIVEN the loaded table WHEN a reload without the udp VIP is applied THEN its stale objects are deleted and the rest stays, flows included', () => {
    const before = liveFacts(LIVE_NS);
    const udpVip = SHRINK_BASE.spec.vips.find((v) => v.protocol === 'udp')!;
    const udpKey = `${udpVip.ip} . udp . ${udpVip.port}`;
    expect(before.elements?.vip_stats_port).toContain(udpKey);
    expect(before.maps).toContain('flows_l2_udp');
    const text = reloadFor(shrunkSpec(), before);
    expect(text).not.toMatch(/^delete table/m);
    expectNftOk('shrinking reload', nftFile(LIVE_NS, text, false));

    const after = liveFacts(LIVE_NS);
    const wanted = planBalancerHost(shrunkSpec(), factsFor(shrunkSpec())).table;
    expect([...after.counters].sort()).toEqual([...wanted.counters].sort());
    expect([...after.maps].sort()).toEqual(
      wanted.maps
        .filter((m) => !m.set)
        .map((m) => m.name)
        .sort(),
    );
    expect([...after.sets].sort()).toEqual(
      wanted.maps
        .filter((m) => m.set)
        .map((m) => m.name)
        .sort(),
    );
    expect([...after.chains].sort()).toEqual(wanted.chains.map((c) => c.name).sort());
    expect(text).toContain(`delete element ${TABLE} vip_stats_port { ${udpKey} }`);
    expect([...(after.elements?.vip_stats_port ?? [])].sort()).toEqual(
      shrunkSpec()
        .vips.filter((v) => v.port !== '*')
        .map((v) => `${v.ip} . ${v.protocol} . ${v.port}`)
        .sort(),
    );
    expect(after.maps).not.toContain('flows_l2_udp');
    const listing = listTable(LIVE_NS);
    expect(listing).not.toContain(udpVip.ip);
    expect(listing).toContain('192.0.2.7 . 40000 . 10.0.1.100 . 80');
  });

  test('GIVEN the loaded table WHEN the balancer moves to another interface THEN the reload recreates the table with the new hook', () => {
    const moved = { ...shrunkSpec(), interface: 'eth1' };
    const text = reloadFor(moved, liveFacts(LIVE_NS));
    expect(text).toMatch(/^delete table netdev tula_dsr$/m);
    expectNftOk('interface change', nftFile(LIVE_NS, text, false));
    expect(liveFacts(LIVE_NS).hooks).toEqual({ ingress: 'type filter hook ingress device "eth1" priority -300; policy accept;' });
  });

  test('GIVEN a table loaded by the previous release (slot tables per VIP, no closing flows) WHEN reloaded THEN it becomes the pooled table in place and flows stay', () => {
    const spec = { ...shrunkSpec(), interface: 'eth1' };
    // what release 0.1 loaded for the same spec (its reload from nothing, recorded with that release's renderer)
    // the VIP's named counter has counted (the upgrade carries its count over into the VIP's element)
    const old = readFileSync(path.join(__dirname, 'fixtures', 'release-0.1-reload.nft'), 'utf8').replace(
      /^add counter netdev tula_dsr vip_tcp0$/m,
      'add counter netdev tula_dsr vip_tcp0 { packets 42 bytes 4200 }',
    );
    mustRun(['ip', 'netns', 'exec', LIVE_NS, 'nft', 'delete', 'table', ...TABLE.split(' ')]);
    expectNftOk('previous release', nftFile(LIVE_NS, old, false));
    addFlow(LIVE_NS);
    const before = liveFacts(LIVE_NS);
    expect(before.maps).toEqual(expect.arrayContaining(['vip_port', 'slots_l2_port']));
    expect(before.maps).not.toContain('closing_l2_tcp');

    const text = reloadFor(spec, before);
    for (const stale of ['vip_port', 'slots_l2_port']) expect(text).toMatch(new RegExp(`^delete map netdev tula_dsr ${stale}$`, 'm'));
    expect(text).toMatch(/^delete set netdev tula_dsr live_l2_port$/m);
    expect(text).not.toMatch(/^delete (map|set) netdev tula_dsr (flows|closing)_/m);
    expectNftOk('upgrade reload', nftFile(LIVE_NS, text, false));
    const after = liveFacts(LIVE_NS);
    expect(after.maps).toEqual(expect.arrayContaining(['vip_pool_port', 'pool_chain', 'slots_l2', 'closing_l2_tcp']));
    expect(after.maps).not.toContain('vip_port');
    expect(after.sets).toEqual(['live_l2', 'pool_ended_l2', 'pool_new_l2', 'vip_stats_port']);
    // the named VIP counters and their map are gone; the VIP's element counter starts where its named counter was
    expect(after.counters.filter((c) => c.startsWith('vip_'))).toEqual([]);
    expect(after.maps).not.toContain('vip_counter_port');
    expect(nft(LIVE_NS, 'list', 'set', ...TABLE.split(' '), 'vip_stats_port').stdout).toContain('10.0.1.100 . tcp . 80 counter packets 42 bytes 4200');
    expect(listTable(LIVE_NS)).toContain('192.0.2.7 . 40000 . 10.0.1.100 . 80');
    // from now on a reload redeclares nothing
    expect(reloadFor(spec, after)).not.toMatch(/^delete /m);
  });

  test('GIVEN more VIPs than a static map was declared for WHEN reloaded THEN the map is declared afresh with room for them', () => {
    const spec = { ...shrunkSpec(), interface: 'eth1' };
    const template = spec.vips[0];
    const many = {
      ...spec,
      vips: Array.from({ length: 40 }, (_, i) => ({ ...template, path: `${template.path}${i}`, name: `many${i}`, ip: `10.0.9.${i + 1}` })),
    };
    const before = liveFacts(LIVE_NS);
    expect(before.sizes.vip_pool_port).toBe(64);
    const text = reloadFor(many, before);
    expect(text).toMatch(/^delete map netdev tula_dsr vip_pool_port$/m);
    expectNftOk('growing reload', nftFile(LIVE_NS, text, false));
    const after = liveFacts(LIVE_NS);
    expect(after.sizes.vip_pool_port).toBe(128);
    // the 40 VIPs have the same backends and weights: one pool, one small slot table
    expect(after.sizes.slots_l2).toBe(64);
    expect(listTable(LIVE_NS)).toContain('10.0.9.40 . tcp . 80');
    expect(listTable(LIVE_NS)).toContain('192.0.2.7 . 40000 . 10.0.1.100 . 80');
    // and back: the next reload shrinks them again
    expectNftOk('shrinking back', nftFile(LIVE_NS, reloadFor(spec, after), false));
    expect(liveFacts(LIVE_NS).sizes.vip_pool_port).toBe(64);
  });

  test('GIVEN a reload with an error WHEN loaded THEN nft refuses it and the old table is untouched (atomic)', () => {
    const before = listTable(LIVE_NS);
    const bad = reloadFor({ ...shrunkSpec(), interface: 'eth1' }, liveFacts(LIVE_NS)).replace(/fwd to "eth1"/, 'fwd to "nosuchif0"');
    expect(nftFile(LIVE_NS, bad, false).status).not.toBe(0);
    expect(listTable(LIVE_NS)).toBe(before);
  });
});
