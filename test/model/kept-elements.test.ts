/**
 * The sets a reload never flushes (the per-VIP statistics): how their element keys are read from a listing, compared
 * with the spec's, and turned into the reload's lines. The real kernel runs them in nft-check.test.ts and
 * test/agent/incremental.test.ts.
 */
import { parseKeptElements } from '../../agent/facts/parsers';
import { NftMap, NftTableFacts } from '../../model';
import { canonicalElementKey, keptElementLines } from '../../model/nft/kept-elements';

const ID = 'netdev tula_dsr';
const FACTS: NftTableFacts = { exists: true, counters: [], maps: [], sets: [], chains: [], sizes: {}, hooks: {} };
const statsSet = (keys: Record<string, string>): NftMap => ({
  name: 'vip_stats_port6',
  set: true,
  counter: true,
  keepElements: true,
  takesOver: 'vip_',
  type: 'ipv6_addr . inet_proto . inet_service',
  elements: Object.entries(keys).map(([vip, text]) => ({ text, vip })),
});

describe('canonicalElementKey', () => {
  test.each([
    ['2001:DB8:0::1 . tcp . 80', '2001:db8::1 . tcp . 80'],
    ['2001:db8::1 . tcp . 80', '2001:db8::1 . tcp . 80'],
    ['10.0.1.100 . UDP . 53', '10.0.1.100 . udp . 53'],
    ['10.0.1.100 . tcp', '10.0.1.100 . tcp'],
  ])('GIVEN %j THEN it reads %j', (text, canonical) => {
    expect(canonicalElementKey(text)).toBe(canonical);
  });
});

describe('parseKeptElements', () => {
  test('GIVEN a stateless listing with sets, a map and wrapped element lines THEN each set lists its keys without counters, and maps are left out', () => {
    const listing = [
      'table netdev tula_dsr {',
      '\tmap vip_pool_port {',
      '\t\ttype ipv4_addr . inet_proto . inet_service : classid',
      '\t\telements = { 10.0.1.100 . tcp . 80 : b295:5203 }',
      '\t}',
      '\tset vip_stats_port {',
      '\t\ttype ipv4_addr . inet_proto . inet_service',
      '\t\tcounter',
      '\t\telements = { 10.0.1.100 . tcp . 80 counter,',
      '\t\t\t     10.0.1.101 . udp . 53 counter packets 3 bytes 180 }',
      '\t}',
      '\tset vip_stats_any {',
      '\t\ttype ipv4_addr . inet_proto',
      '\t\tcounter',
      '\t}',
      '}',
    ].join('\n');
    expect(parseKeptElements(listing)).toEqual({ vip_stats_port: ['10.0.1.100 . tcp . 80', '10.0.1.101 . udp . 53'], vip_stats_any: [] });
  });

  test('GIVEN a listed key that is not addresses, names and numbers THEN it is left out: it never reaches a transaction', () => {
    const listing = ['\tset vip_stats_port {', '\t\telements = { 10.0.1.100 . tcp . 80 counter, 10.0.1.1 } ; flush ruleset ; { 1 counter }', '\t}'].join('\n');
    expect(parseKeptElements(listing)).toEqual({ vip_stats_port: ['10.0.1.100 . tcp . 80'] });
  });
});

describe('keptElementLines', () => {
  test('GIVEN the host lists a wanted key in another spelling and one key no VIP has THEN only the stale one is deleted, by its listed text, and every wanted one is added', () => {
    const facts = { ...FACTS, elements: { vip_stats_port6: ['2001:db8::1 . tcp . 80', '2001:db8::9 . tcp . 80'] } };
    expect(keptElementLines(ID, statsSet({ a: '2001:DB8:0::1 . tcp . 80', b: '2001:db8::2 . tcp . 80' }), facts)).toEqual([
      'delete element netdev tula_dsr vip_stats_port6 { 2001:db8::9 . tcp . 80 }',
      'add element netdev tula_dsr vip_stats_port6 { 2001:DB8:0::1 . tcp . 80, 2001:db8::2 . tcp . 80 }',
    ]);
  });

  test("GIVEN the named counters of an older release WHEN the set takes them over THEN each VIP's element starts from its counter's count", () => {
    const facts = { ...FACTS, counterValues: { vip_a: { packets: 7, bytes: 420 } } };
    expect(keptElementLines(ID, statsSet({ a: '2001:db8::1 . tcp . 80', b: '2001:db8::2 . tcp . 80' }), facts)).toEqual([
      'add element netdev tula_dsr vip_stats_port6 { 2001:db8::1 . tcp . 80 counter packets 7 bytes 420, 2001:db8::2 . tcp . 80 }',
    ]);
  });

  test('GIVEN no elements wanted and none listed THEN there is nothing to load', () => {
    expect(keptElementLines(ID, statsSet({}), FACTS)).toEqual([]);
  });
});
