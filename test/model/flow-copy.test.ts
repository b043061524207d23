/**
 * The receiver's check of copied flows: only an IPv4 4-tuple of one of the pair's VIPs, in the flow map of that VIP's
 * mode and protocol, whose value is one of that VIP's backends, is written, with the VIP's flow timeout.
 */
import { FlowEntry, FlowEntryChecker, backendMark, writeCommands } from '../../model';
import { backends, balancerSpec, factsFor, macOf, pairMember } from '../support/render-fixtures';

const spec = pairMember(
  balancerSpec([
    { name: 'web', ip: '10.0.1.100', port: 80, backends: backends([1, 1]) },
    { name: 'api', ip: '10.0.1.100', port: 443, flowTimeoutSec: 900, backends: backends([1], 13) },
    { name: 'dns', ip: '10.0.1.101', port: 53, protocol: 'udp', algorithm: 'round-robin', flowTimeoutSec: 30, backends: backends([1, 1]) },
    { name: 'any', ip: '10.0.1.102', port: '*', algorithm: 'round-robin', backends: backends([1, 1]) },
    { name: 'far', ip: '10.0.1.103', port: 80, mode: 'l3', backends: backends([1], 21) },
  ]),
);
const checker = new FlowEntryChecker(spec, factsFor(spec));
const entry = (e: Partial<FlowEntry>): FlowEntry => ({
  map: 'flows_l2_tcp',
  saddr: '192.0.2.7',
  sport: 40000,
  daddr: '10.0.1.100',
  dport: 80,
  value: macOf('10.0.1.11'),
  ...e,
});

describe('the flow copy receiver check', () => {
  test.each([
    ['a web flow', entry({}), { vip: 'web', timeoutSec: 300 }],
    ["a flow of the same address's other port, to its backend", entry({ dport: 443, value: macOf('10.0.1.13') }), { vip: 'api', timeoutSec: 900 }],
    ['a UDP flow', entry({ map: 'flows_l2_udp', daddr: '10.0.1.101', dport: 53, value: macOf('10.0.1.12') }), { vip: 'dns', timeoutSec: 30 }],
    ["an all-ports VIP's flow on any port", entry({ daddr: '10.0.1.102', dport: 8443 }), { vip: 'any', timeoutSec: 300 }],
    [
      'an L3 flow with its backend mark',
      entry({ map: 'flows_l3_tcp', daddr: '10.0.1.103', value: `0x${backendMark('10.0.1.21')}` }),
      { vip: 'far', timeoutSec: 300 },
    ],
    ['a MAC in capitals', entry({ value: macOf('10.0.1.11').toUpperCase() }), { vip: 'web', timeoutSec: 300 }],
  ])('GIVEN %s THEN it is accepted with its VIP timeout', (_what, e, expected) => {
    expect(checker.check(e)).toEqual(expected);
  });

  test.each([
    ['an unknown map', entry({ map: 'slots_l2' }), 'map "slots_l2" is not a copied flow map (flows_l2_tcp, flows_l2_udp, flows_l3_tcp, flows_l3_udp)'],
    [
      'a VIP address the pair does not have',
      entry({ daddr: '10.0.1.199' }),
      'flows_l2_tcp 192.0.2.7:40000 -> 10.0.1.199:80: 10.0.1.199:80 is no l2 tcp VIP of this pair',
    ],
    ['a port the VIP does not serve', entry({ dport: 22 }), 'flows_l2_tcp 192.0.2.7:40000 -> 10.0.1.100:22: 10.0.1.100:22 is no l2 tcp VIP of this pair'],
    ['a TCP VIP in the UDP map', entry({ map: 'flows_l2_udp' }), 'flows_l2_udp 192.0.2.7:40000 -> 10.0.1.100:80: 10.0.1.100:80 is no l2 udp VIP of this pair'],
    [
      "a backend of another VIP (api's, on web)",
      entry({ value: macOf('10.0.1.13') }),
      `flows_l2_tcp 192.0.2.7:40000 -> 10.0.1.100:80: "${macOf('10.0.1.13')}" is not a backend of VIP web`,
    ],
    [
      'a MAC of no backend',
      entry({ value: '02:66:66:66:66:66' }),
      'flows_l2_tcp 192.0.2.7:40000 -> 10.0.1.100:80: "02:66:66:66:66:66" is not a backend of VIP web',
    ],
    [
      'a mark in the L2 map',
      entry({ value: `0x${backendMark('10.0.1.11')}` }),
      `flows_l2_tcp 192.0.2.7:40000 -> 10.0.1.100:80: "0x${backendMark('10.0.1.11')}" is not a backend of VIP web`,
    ],
    [
      'nft syntax in the value',
      entry({ value: `${macOf('10.0.1.11')} }; flush ruleset` }),
      `flows_l2_tcp 192.0.2.7:40000 -> 10.0.1.100:80: "${macOf('10.0.1.11')} }; flush ruleset" is not a backend of VIP web`,
    ],
    [
      'nft syntax in an address',
      entry({ saddr: '1.2.3.4 } ; flush ruleset' }),
      'flows_l2_tcp 1.2.3.4 } ; flush ruleset:40000 -> 10.0.1.100:80 is not an IPv4 4-tuple',
    ],
    ['a port out of range', entry({ sport: 70000 }), 'flows_l2_tcp 192.0.2.7:70000 -> 10.0.1.100:80 is not an IPv4 4-tuple'],
    ['an IPv6 source', entry({ saddr: 'fd00::7' }), 'flows_l2_tcp fd00::7:40000 -> 10.0.1.100:80 is not an IPv4 4-tuple'],
  ])('GIVEN %s THEN it is refused, saying why', (_what, e, problem) => {
    expect(checker.check(e)).toEqual({ problem });
  });

  test('GIVEN accepted entries WHEN written THEN each is added, deleted and added again with its timeout (an existing one is replaced)', () => {
    expect(writeCommands('netdev tula_dsr', [{ ...entry({}), timeoutSec: 300 }])).toBe(
      [
        `add element netdev tula_dsr flows_l2_tcp { 192.0.2.7 . 40000 . 10.0.1.100 . 80 : ${macOf('10.0.1.11')} }`,
        'delete element netdev tula_dsr flows_l2_tcp { 192.0.2.7 . 40000 . 10.0.1.100 . 80 }',
        `add element netdev tula_dsr flows_l2_tcp { 192.0.2.7 . 40000 . 10.0.1.100 . 80 timeout 300s : ${macOf('10.0.1.11')} }`,
      ].join('\n'),
    );
  });
});
