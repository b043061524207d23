/**
 * The statistics read from a REAL table: a balancer ruleset loaded with the real nft in a network namespace this test
 * creates, crafted client packets (SYN, FIN, UDP) sent through its ingress hook, and the frames the balancer forwards
 * sniffed on the way out. The counters listing (text and JSON), the parser, the sample script and the snapshot must
 * give exactly what the sniffer saw.
 *
 * Needs root (network namespaces, nftables, raw sockets) and python3. Without them this file FAILS: it never skips.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  BalancerSpec,
  CounterValue,
  StatsSnapshot,
  buildStatsSnapshot,
  flowCounterName,
  groupPools,
  parseNftCounters,
  planBalancerHost,
  renderNftDeclarative,
  vipCounterName,
} from '../../model';
import { parseSampleOutput, renderSampleScript } from '../../model/stats-sample';
import { backends, balancerSpec, factsFor, LB_MAC, macOf } from '../support/render-fixtures';
import { CraftedPacket, SeenFrame, TCP_FIN, TCP_SYN, sendAndSniff } from '../support/packets';

const NS = `tula-t-${randomBytes(4).toString('hex')}-st`;
const CLIENT_MAC = '02:00:00:00:00:99';
const CLIENT_IP = '10.0.1.1';

function run(argv: string[], input?: string) {
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  if (r.error) throw new Error(`${argv.join(' ')}: ${r.error.message}`);
  return r;
}

function mustRun(argv: string[], input?: string): string {
  const r = run(argv, input);
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

const inNs = (...argv: string[]) => ['ip', 'netns', 'exec', NS, ...argv];

// web: its own pool (1:2:3); api and apitls: one shared pool (same backends and weights); dns: UDP
const SPEC: BalancerSpec = balancerSpec([
  { name: 'web', ip: '10.0.1.100', port: 80, algorithm: 'weighted-round-robin', backends: backends([1, 2, 3]) },
  { name: 'api', ip: '10.0.1.101', port: 8080, algorithm: 'round-robin', backends: backends([1, 1]) },
  { name: 'apitls', ip: '10.0.1.101', port: 8443, algorithm: 'round-robin', backends: backends([1, 1]) },
  { name: 'dns', ip: '10.0.1.102', port: 53, protocol: 'udp', algorithm: 'round-robin', backends: backends([1, 1, 1]) },
]);

const tcp = (dst: string, dport: number, sport: number, flags: CraftedPacket['flags']): CraftedPacket => ({ dst, proto: 'tcp', sport, dport, flags });
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const TRAFFIC: CraftedPacket[] = [
  ...range(40000, 12).map((p) => tcp('10.0.1.100', 80, p, 'S')),
  ...range(40000, 5).map((p) => tcp('10.0.1.100', 80, p, 'FA')),
  ...range(41000, 4).map((p) => tcp('10.0.1.101', 8080, p, 'S')),
  ...range(42000, 2).map((p) => tcp('10.0.1.101', 8443, p, 'S')),
  tcp('10.0.1.101', 8443, 42000, 'FA'),
  ...range(43000, 5).map((sport): CraftedPacket => ({ dst: '10.0.1.102', proto: 'udp', sport, dport: 53 })),
];

let seen: SeenFrame[] = [];
let textListing = '';
let jsonListing = '';
let snapshot: StatsSnapshot;
let sampleCounters: Map<string, CounterValue>;

beforeAll(() => {
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    throw new Error('stats-counters.test.ts MUST run as root: it creates a network namespace, loads nft rules and sends raw frames.');
  mustRun(['ip', 'netns', 'add', NS]);
  // eth0 is the balancer's interface; the client sends on its veth peer and sees what the balancer forwards
  mustRun(['ip', '-n', NS, 'link', 'add', 'eth0', 'address', LB_MAC, 'type', 'veth', 'peer', 'name', 'client0', 'address', CLIENT_MAC]);
  for (const dev of ['eth0', 'client0']) mustRun(['ip', '-n', NS, 'link', 'set', dev, 'up']);
  mustRun(inNs('nft', '-f', '-'), renderNftDeclarative(planBalancerHost(SPEC, factsFor(SPEC)).table));
  seen = sendAndSniff(NS, { iface: 'client0', srcMac: CLIENT_MAC, dstMac: LB_MAC, srcIp: CLIENT_IP, packets: TRAFFIC });
  textListing = mustRun(inNs('nft', 'list', 'counters', 'table', 'netdev', 'tula_dsr'));
  jsonListing = mustRun(inNs('nft', '-j', 'list', 'counters', 'table', 'netdev', 'tula_dsr'));
  // the named counters, and the pool flow counts from their counter sets, as the agent's sample reads them
  sampleCounters = parseSampleOutput(mustRun(inNs('sh', '-s'), renderSampleScript())).counters;
  snapshot = buildStatsSnapshot({ spec: SPEC, counters: sampleCounters, sampledAt: 1_700_000_000 });
});

afterAll(() => {
  run(['ip', 'netns', 'del', NS]);
});

const macToName = new Map(backends([1, 2, 3]).map((b) => [macOf(b.ip), b.ip]));
const forwarded = (f: (s: SeenFrame) => boolean) => seen.filter((s) => s.srcMac === LB_MAC && f(s));
/** Frames forwarded per backend address, for the frames `f` selects. */
function perBackend(f: (s: SeenFrame) => boolean, measure: (s: SeenFrame) => number = () => 1): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of forwarded(f)) out[macToName.get(s.dstMac)!] = (out[macToName.get(s.dstMac)!] ?? 0) + measure(s);
  return out;
}
const total = (f: (s: SeenFrame) => boolean, measure: (s: SeenFrame) => number = () => 1) => forwarded(f).reduce((a, s) => a + measure(s), 0);
const poolOf = (vip: string) => snapshot.pools.find((p) => p.vips.includes(vip))!;
const figures = (vip: string, key: 'newFlows' | 'endedFlows') =>
  Object.fromEntries(
    poolOf(vip)
      .backends.filter((b) => (b[key] ?? 0) > 0)
      .map((b) => [b.address, b[key]]),
  );

describe('statistics from a real nft table', () => {
  test('GIVEN the crafted traffic WHEN the balancer forwards it THEN every packet came back with a backend MAC (the sniffer sees the whole picture)', () => {
    expect(forwarded(() => true)).toHaveLength(TRAFFIC.length);
    expect(forwarded((s) => !macToName.has(s.dstMac))).toEqual([]);
    // weighted round robin over 12 new connections of a 1:2:3 VIP: two full rounds
    expect(perBackend((s) => s.dst === '10.0.1.100' && (s.flags & TCP_SYN) !== 0)).toEqual({ '10.0.1.11': 2, '10.0.1.12': 4, '10.0.1.13': 6 });
  });

  test('GIVEN the same table WHEN its counters are listed as text and as JSON THEN both parse to the same figures, for every counter of the table', () => {
    const text = parseNftCounters(textListing);
    const json = parseNftCounters(jsonListing);
    expect(json).toEqual(text);
    const declared = [...renderNftDeclarative(planBalancerHost(SPEC, factsFor(SPEC)).table).matchAll(/^\tcounter (\S+) \{/gm)].map((m) => m[1]);
    expect([...text.keys()].sort()).toEqual(declared.sort());
  });

  test('GIVEN the snapshot THEN per VIP packets and bytes are what the balancer forwarded for it, and no counter is missing', () => {
    expect(snapshot.missingCounters).toEqual([]);
    for (const [vip, ip, port] of [
      ['web', '10.0.1.100', 80],
      ['api', '10.0.1.101', 8080],
      ['apitls', '10.0.1.101', 8443],
      ['dns', '10.0.1.102', 53],
    ] as const) {
      const v = snapshot.vips.find((x) => x.name === vip)!;
      const mine = (s: SeenFrame) => s.dst === ip && s.dport === port;
      expect({ vip, packets: v.packets, bytes: v.bytes }).toEqual({ vip, packets: total(mine), bytes: total(mine, (s) => s.ipBytes) });
    }
  });

  test('GIVEN the snapshot THEN each pool counts the SYNs (new flows) and client FINs (ended flows) that went to each backend, and a shared pool counts both of its VIPs', () => {
    const syn = (ips: string[]) => (s: SeenFrame) => ips.includes(s.dst) && s.proto === 'tcp' && (s.flags & TCP_SYN) !== 0;
    const fin = (ips: string[]) => (s: SeenFrame) => ips.includes(s.dst) && s.proto === 'tcp' && (s.flags & TCP_FIN) !== 0;
    const sum = (r: Record<string, number | null>) => Object.values(r).reduce<number>((a, v) => a + (v ?? 0), 0);
    expect([figures('web', 'newFlows'), figures('web', 'endedFlows'), figures('api', 'newFlows'), figures('api', 'endedFlows')].map(sum)).toEqual([
      12, 5, 6, 1,
    ]);
    expect(figures('web', 'newFlows')).toEqual(perBackend(syn(['10.0.1.100'])));
    expect(figures('web', 'endedFlows')).toEqual(perBackend(fin(['10.0.1.100'])));
    expect(poolOf('api').vips).toEqual(['api', 'apitls']);
    expect(figures('api', 'newFlows')).toEqual(perBackend(syn(['10.0.1.101'])));
    expect(figures('api', 'endedFlows')).toEqual(perBackend(fin(['10.0.1.101'])));
    // a VIP's new flows are its pool's: api and apitls both show the 6 of their pool
    expect(snapshot.vips.filter((v) => v.name.startsWith('api')).map((v) => v.newFlows)).toEqual([6, 6]);
    expect(figures('dns', 'newFlows')).toEqual(perBackend((s) => s.proto === 'udp'));
    // without a runtime, TCP active connections are new − ended (an upper bound); UDP has no end signal
    expect(snapshot.vips.find((v) => v.name === 'web')).toMatchObject({ active: 12 - 5, activeSource: 'upper-bound' });
    expect(snapshot.vips.find((v) => v.name === 'dns')).toMatchObject({ active: null, activeSource: null });
  });

  test('GIVEN the snapshot THEN per backend packets and bytes sum every VIP that sent to it', () => {
    const expected = backends([1, 2, 3]).map((b) => ({
      address: b.ip,
      packets: total((s) => s.dstMac === macOf(b.ip)),
      bytes: total(
        (s) => s.dstMac === macOf(b.ip),
        (s) => s.ipBytes,
      ),
    }));
    expect(snapshot.backends.map(({ address, packets, bytes }) => ({ address, packets, bytes }))).toEqual(expected);
  });

  test("GIVEN the agent's sample script WHEN it runs with sh in the namespace THEN it reads the same counters, the clock and the listing time", () => {
    const before = Date.now() / 1000;
    const sample = parseSampleOutput(mustRun(inNs('sh', '-s'), renderSampleScript()));
    // every named counter of the table, plus one new and one ended count per (pool, backend) and one count per VIP
    // from the counter sets
    const named = parseNftCounters(textListing);
    expect(new Map([...sample.counters].filter(([name]) => named.has(name)))).toEqual(named);
    const pools = groupPools(SPEC.vips);
    const flowCounts = pools.flatMap((p) => p.backends.flatMap((b) => [flowCounterName('new', p.id, b.ip), flowCounterName('end', p.id, b.ip)]));
    expect([...sample.counters.keys()].filter((name) => !named.has(name)).sort()).toEqual(
      [...new Set([...flowCounts, ...SPEC.vips.map(vipCounterName)])].sort(),
    );
    expect(sample.counters).toEqual(sampleCounters);
    expect(sample.sampledAt).toBeGreaterThanOrEqual(Math.floor(before));
    expect(sample.sampledAt).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    expect(sample.sampledAt % 1).not.toBe(0);
    expect(sample.listingMs).toBeGreaterThanOrEqual(0);
    expect(sample.listingMs).toBeLessThan(5000);
  });

  test('GIVEN the table is gone WHEN the sample script runs THEN it fails with what to do', () => {
    mustRun(inNs('nft', 'delete', 'table', 'netdev', 'tula_dsr'));
    expect(() => parseSampleOutput(mustRun(inNs('sh', '-s'), renderSampleScript()))).toThrow(
      'the balancer has no nft table netdev tula_dsr: apply the stack first',
    );
  });
});
