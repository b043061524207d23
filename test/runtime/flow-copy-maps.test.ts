/**
 * The flow copy's nft side on a REAL table (a pair member's, in a throwaway network namespace): received flows are
 * written with their VIP's timeout, an entry the map already holds is renewed, one it holds with another backend is
 * replaced (and only that one goes through the slow path), and the listing the sender parses is nft's own.
 *
 * Needs root (network namespaces, nftables). Without it this file FAILS: it never skips silently.
 */
import { BALANCER_TABLE, FlowEntry, planBalancerHost, renderNftReload } from '../../model';
import { NftRunner, systemNft } from '../../runtime/nft';
import { forgetCommands, listFlows, parseFlowListing, writeFlows } from '../../runtime/flow-copy/flow-maps';
import { systemNftLister } from '../../runtime/flow-copy/service';
import { createBalancerNetns, BalancerNetns } from '../support/balancer-netns';
import { FRESH, backends, balancerSpec, factsFor, macOf, pairMember } from '../support/render-fixtures';

let ns: BalancerNetns;
const nft = (...args: string[]) => ns.nft(...args);

const spec = pairMember(balancerSpec([{ name: 'web', ip: '10.0.1.100', port: 80, flowTimeoutSec: 120, backends: backends([1, 1, 1]) }]));
const flow = (sport: number, backend: string): FlowEntry & { timeoutSec: number } => ({
  map: 'flows_l2_tcp',
  saddr: '192.0.2.7',
  sport,
  daddr: '10.0.1.100',
  dport: 80,
  value: macOf(backend),
  timeoutSec: 120,
});
/** Each flow of the map: `sport → [backend MAC, timeout]`. */
function flows(): Record<number, [string, string]> {
  const text = nft('list', 'map', 'netdev', BALANCER_TABLE, 'flows_l2_tcp');
  return Object.fromEntries(
    [...text.matchAll(/192\.0\.2\.7 \. (\d+) \. 10\.0\.1\.100 \. 80 timeout (\S+) expires \S+ : ([0-9a-f:]{17})/g)].map((m) => [Number(m[1]), [m[3], m[2]]]),
  );
}

let transactions: string[] = [];
let runner: NftRunner;

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('this test needs root: it creates a network namespace and loads nft rules');
  ns = createBalancerNetns('fc');
  ns.load(renderNftReload(planBalancerHost(spec, factsFor(spec)).table, FRESH));
  const real = systemNft(ns.lockFile, ns.exec);
  runner = {
    apply: async (text) => {
      transactions.push(text);
      await real.apply(text);
    },
    list: (kind, name) => real.list(kind, name),
  };
});

afterAll(() => {
  ns?.remove();
});

beforeEach(() => {
  transactions = [];
});

describe('writing copied flows', () => {
  test('GIVEN new flows WHEN written THEN the map holds them with their VIP timeout, in one transaction', async () => {
    expect(await writeFlows(runner, [flow(40001, '10.0.1.11'), flow(40002, '10.0.1.12')])).toBe(0);
    expect(flows()).toMatchObject({ 40001: [macOf('10.0.1.11'), '2m'], 40002: [macOf('10.0.1.12'), '2m'] });
    expect(transactions).toHaveLength(1);
  });

  test('GIVEN a flow the map holds (its timeout running out) WHEN the same flow arrives THEN its timeout starts again', async () => {
    nft('add', 'element', 'netdev', BALANCER_TABLE, 'flows_l2_tcp', `{ 192.0.2.7 . 40003 . 10.0.1.100 . 80 timeout 5s : ${macOf('10.0.1.13')} }`);
    expect(await writeFlows(runner, [flow(40003, '10.0.1.13')])).toBe(0);
    expect(flows()[40003]).toEqual([macOf('10.0.1.13'), '2m']);
    expect(transactions).toHaveLength(1);
  });

  test("GIVEN a flow the map holds with another backend (this member's stale one) WHEN the other member's arrives with others THEN it replaces it, and only it takes the slow path", async () => {
    nft('add', 'element', 'netdev', BALANCER_TABLE, 'flows_l2_tcp', `{ 192.0.2.7 . 40004 . 10.0.1.100 . 80 timeout 60s : ${macOf('10.0.1.11')} }`);
    const batch = [flow(40005, '10.0.1.11'), flow(40004, '10.0.1.12'), flow(40006, '10.0.1.13'), flow(40007, '10.0.1.11')];
    expect(await writeFlows(runner, batch)).toBe(0);
    expect(flows()).toMatchObject({
      40004: [macOf('10.0.1.12'), '2m'],
      40005: [macOf('10.0.1.11'), '2m'],
      40006: [macOf('10.0.1.13'), '2m'],
      40007: [macOf('10.0.1.11'), '2m'],
    });
    // the batch, the half with the stale entry, its halves, the entry alone, its replacement, the other half
    expect(transactions.length).toBeLessThanOrEqual(7);
    expect(transactions).toContain(
      [
        'delete element netdev tula_dsr flows_l2_tcp { 192.0.2.7 . 40004 . 10.0.1.100 . 80 }',
        `add element netdev tula_dsr flows_l2_tcp { 192.0.2.7 . 40004 . 10.0.1.100 . 80 timeout 120s : ${macOf('10.0.1.12')} }`,
        '',
      ].join('\n'),
    );
  });

  test("GIVEN the member's recent and flow maps WHEN the sender lists them THEN it reads nft's own listing; a map the table lacks counts as empty", async () => {
    nft('add', 'element', 'netdev', BALANCER_TABLE, 'recent_l2_tcp', `{ 192.0.2.8 . 41000 . 10.0.1.100 . 80 : ${macOf('10.0.1.12')} }`);
    const list = systemNftLister(ns.exec);
    expect(await listFlows(list, ['recent_l2_tcp', 'recent_l3_udp'], () => 'flows_l2_tcp')).toEqual([
      { map: 'flows_l2_tcp', saddr: '192.0.2.8', sport: 41000, daddr: '10.0.1.100', dport: 80, value: macOf('10.0.1.12') },
    ]);
    const all = await listFlows(list, ['flows_l2_tcp']);
    expect(all.map((e) => e.sport).sort()).toEqual([40001, 40002, 40003, 40004, 40005, 40006, 40007]);
  });

  test('GIVEN listed recent flows, one expired since WHEN the sender takes them out THEN the recent map holds only what was noted after the listing', async () => {
    const recent = (sport: number, timeout = '1h') =>
      nft('add', 'element', 'netdev', BALANCER_TABLE, 'recent_l2_tcp', `{ 192.0.2.9 . ${sport} . 10.0.1.100 . 80 timeout ${timeout} : ${macOf('10.0.1.11')} }`);
    recent(42001);
    recent(42002, '1s');
    const list = systemNftLister(ns.exec);
    const listed = await listFlows(list, ['recent_l2_tcp']);
    recent(42003);
    await new Promise((r) => setTimeout(r, 1500));
    await list(forgetCommands(listed.filter((e) => e.saddr === '192.0.2.9').map((entry) => ({ map: 'recent_l2_tcp', entry }))));
    expect((await listFlows(list, ['recent_l2_tcp'])).filter((e) => e.saddr === '192.0.2.9').map((e) => e.sport)).toEqual([42003]);
  });

  test("GIVEN nft's listing of an L3 map (marks) WHEN parsed THEN each entry keeps its 4-tuple and its mark as nft prints it", () => {
    const listing = [
      'table netdev tula_dsr {',
      '\tmap recent_l3_tcp {',
      '\t\ttype ipv4_addr . inet_service . ipv4_addr . inet_service : mark',
      '\t\tflags dynamic,timeout',
      '\t\ttimeout 2s',
      '\t\telements = { 10.0.0.1 . 1234 . 10.0.0.100 . 80 expires 1s968ms : 0x0a000115,',
      '\t\t\t     10.0.0.1 . 1235 . 10.0.0.100 . 80 timeout 5m expires 4m59s984ms : 0x00000015 }',
      '\t}',
      '}',
    ].join('\n');
    expect(parseFlowListing(listing, () => 'flows_l3_tcp')).toEqual([
      { map: 'flows_l3_tcp', saddr: '10.0.0.1', sport: 1234, daddr: '10.0.0.100', dport: 80, value: '0x0a000115' },
      { map: 'flows_l3_tcp', saddr: '10.0.0.1', sport: 1235, daddr: '10.0.0.100', dport: 80, value: '0x00000015' },
    ]);
  });
});
