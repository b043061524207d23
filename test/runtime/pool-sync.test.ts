/**
 * The runtime's pool sync on a REAL table in a throwaway network namespace: a health change rewrites only the
 * managed pool's slot and live elements, in one small transaction, and leaves every other VIP's elements, the open
 * flows and the counters alone; the way back restores the table the agent loaded, element for element.
 *
 * Needs root (network namespaces, nftables). Without it this file FAILS: it never skips silently.
 */
import { BALANCER_TABLE, DEFAULT_POLICY, PoolPolicy, groupPools, planBalancerHost, poolClassid, renderNftReload } from '../../model';
import { NftRunner, systemNft } from '../../runtime/nft';
import { PoolSync } from '../../runtime/pool-sync';
import { createBalancerNetns, BalancerNetns } from '../support/balancer-netns';
import { FRESH, backends, balancerSpec, factsFor, macOf } from '../support/render-fixtures';

let ns: BalancerNetns;
const nft = (...args: string[]) => ns.nft(...args);

const CHECK = { kind: 'tcp', intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2 } as const;
const spec = balancerSpec([
  { name: 'web', ip: '10.0.1.100', port: 80, algorithm: 'weighted-round-robin', backends: backends([1, 1, 1]), healthCheck: CHECK },
  { name: 'api', ip: '10.0.1.101', port: 443, algorithm: 'weighted-round-robin', backends: backends([1, 2, 3]) },
]);
const facts = factsFor(spec);
const pools = groupPools(spec.vips);
const web = pools.find((p) => p.vips.includes('web'))!;
const api = pools.find((p) => p.vips.includes('api'))!;
const FLOW = `10.9.9.9 . 40000 . 10.0.1.100 . 80`;

/** The table as nft lists it, without the lines of the runtime's own (`_rt`) maps. */
const withoutExpiry = (text: string) => text.replace(/ expires \S+/g, '');

function listingOutsideManaged(): string {
  const lines = withoutExpiry(nft('list', 'table', 'netdev', BALANCER_TABLE)).split('\n');
  const out: string[] = [];
  let skipping = false;
  for (const line of lines) {
    if (/^\t(map|set) /.test(line)) skipping = /_rt \{$/.test(line);
    if (!skipping) out.push(line);
  }
  return out.join('\n');
}

const slotValues = () =>
  nft('list', 'map', 'netdev', BALANCER_TABLE, 'slots_l2_rt')
    .split('\n')
    .join(' ')
    .match(/\d+ : [0-9a-f:]{17}/g)!
    .map((e) => e.split(' : ')[1])
    .sort();

let transactions: string[] = [];
let runner: NftRunner;

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('this test needs root: it creates a network namespace and loads nft rules');
  ns = createBalancerNetns('ps');
  ns.load(renderNftReload(planBalancerHost(spec, facts).table, FRESH));
  const real = systemNft(ns.lockFile, ns.exec);
  runner = {
    apply: async (text) => {
      transactions.push(text);
      await real.apply(text);
    },
    list: (kind, name) => real.list(kind, name),
  };
  // an open flow, as the data plane would have recorded it
  nft('add', 'element', 'netdev', BALANCER_TABLE, 'flows_l2_tcp', `{ ${FLOW} timeout 600s : ${macOf('10.0.1.12')} }`);
});

afterAll(() => {
  ns?.remove();
});

describe('pool sync on a real table', () => {
  test('GIVEN a checked VIP next to an unchecked one THEN only the checked one’s pool is managed (its slots in the _rt maps)', () => {
    expect([web.managed, api.managed]).toEqual([true, false]);
    expect(new Set(slotValues())).toEqual(new Set(['10.0.1.11', '10.0.1.12', '10.0.1.13'].map(macOf)));
  });

  test('GIVEN be2 fails its check WHEN the pool syncs THEN one small transaction moves only that pool’s slots; the other VIP, the flows and the counters are untouched; and the way back restores the loaded table', async () => {
    const loaded = nft('list', 'table', 'netdev', BALANCER_TABLE);
    const outside = listingOutsideManaged();
    const sync = new PoolSync(runner);
    transactions = [];
    const down: PoolPolicy = { takes: (b) => b.weight > 0 && b.name !== 'be2' };

    const result = await sync.sync(spec, facts, down, pools);

    expect(result.pools).toEqual([(web.id >>> 0).toString(16).padStart(8, '0')]);
    expect(transactions).toHaveLength(1);
    const statements = transactions[0].split('\n').filter((l) => /^(add|delete) element/.test(l));
    // every statement is about the web pool's slots or live set, and nothing else
    expect(statements.every((l) => /(slots|live)_l2_rt \{ /.test(l) && l.includes(poolClassid(web.id)) && !l.includes(poolClassid(api.id)))).toBe(true);
    expect(slotValues().includes(macOf('10.0.1.12'))).toBe(false);
    expect(listingOutsideManaged()).toBe(outside);
    expect(nft('list', 'map', 'netdev', BALANCER_TABLE, 'flows_l2_tcp')).toContain(`${FLOW} `);

    // a second sync with the same view changes nothing and sends nothing
    transactions = [];
    expect((await sync.sync(spec, facts, down, pools)).pools).toEqual([]);
    expect(transactions).toEqual([]);

    // recovered: a fresh sync (reading the live maps first, as after a restart) restores the table as loaded
    await new PoolSync(runner).sync(spec, facts, DEFAULT_POLICY, pools);
    expect(withoutExpiry(nft('list', 'table', 'netdev', BALANCER_TABLE))).toBe(withoutExpiry(loaded));
  });
});
