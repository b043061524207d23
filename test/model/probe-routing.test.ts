/**
 * The probe routing as rendered: packets marked in a `route` output chain and routed again by one rule on that mark
 * (a rule on the probe ports would also catch the reverse path check of the reply), per-backend routes (L2 to the
 * MAC, L3 into the tunnel), and a cleanup that also removes the rule of earlier versions. The kernel side is proven
 * in test/e2e/health.test.ts (L2) and test/l3 (L3, strict rp_filter).
 */
import { PROBE_MARK, PROBE_ROUTE_TABLE, assignProbePorts, probeTargets, renderProbeRouting, renderProbeRoutingCleanup, tunnelName } from '../../model';
import { balancerSpec } from '../support/render-fixtures';

const TCP = { kind: 'tcp', port: 9090 } as const;
const spec = balancerSpec([
  { name: 'web', ip: '10.0.1.100', port: 80, mode: 'l2', healthCheck: TCP, backends: [{ name: 'a', ip: '10.0.1.11', mac: '02:00:00:00:00:11' }] },
  {
    name: 'far',
    ip: '10.0.1.101',
    port: 53,
    protocol: 'udp',
    mode: 'l3',
    healthCheck: { kind: 'udp', payloadHex: '00' },
    backends: [{ name: 'b', ip: '10.0.3.2' }],
  },
]);
const targets = probeTargets(spec);
const ports = assignProbePorts(targets);
const routing = renderProbeRouting(spec, targets, ports);
const portOf = (ip: string) => ports.get(targets.find((t) => t.backend.ip === ip)!.key)!;

describe('renderProbeRouting', () => {
  test('GIVEN an L2 and an L3 target THEN one route each (the MAC, onlink; the tunnel), then one rule on the probe mark, none on ports', () => {
    expect(routing.commands).toEqual([
      ['ip', 'route', 'replace', '10.0.3.2', 'dev', 'tula0a000302', 'table', '61000'],
      ['ip', 'route', 'replace', '10.0.1.11', 'via', '10.0.1.11', 'dev', 'eth0', 'onlink', 'table', '61000'],
      ['ip', 'rule', 'add', 'pref', '1061', 'fwmark', String(PROBE_MARK), 'lookup', String(PROBE_ROUTE_TABLE)],
    ]);
  });

  test('GIVEN the targets THEN only their own packets are marked (backend . probe port), in a route chain that makes the kernel route them again', () => {
    const [l2, l3] = [portOf('10.0.1.11'), portOf('10.0.3.2')];
    expect(routing.nft).toContain(`\tset probes {\n\t\ttypeof ip daddr . th sport\n\t\telements = { 10.0.3.2 . ${l3}, 10.0.1.11 . ${l2} }\n\t}`);
    expect(routing.nft).toContain(
      '\tchain output {\n\t\ttype route hook output priority mangle; policy accept;\n' +
        '\t\tmeta l4proto { tcp, udp } th sport 61000-61999 ip daddr . th sport @probes meta mark set 61000\n\t}',
    );
    expect(routing.nft).toContain(`elements = { 10.0.3.2 . ${l3} : 10.0.1.101, 10.0.1.11 . ${l2} : 10.0.1.100 }`);
    expect(routing.nft).toContain(`elements = { 10.0.1.101 . ${l3} : 10.0.3.2, 10.0.1.100 . ${l2} : 10.0.1.11 }`);
  });
});

describe('renderProbeRouting with IPv6 backends', () => {
  const spec6 = balancerSpec([
    { name: 'web4', ip: '10.0.1.100', port: 80, mode: 'l2', healthCheck: TCP, backends: [{ name: 'a', ip: '10.0.1.11', mac: '02:00:00:00:00:11' }] },
    { name: 'web6', ip: 'fd00:1::100', port: 80, mode: 'l2', healthCheck: TCP, backends: [{ name: 'a', ip: 'fd00:1::11', mac: '02:00:00:00:00:11' }] },
    {
      name: 'far6',
      ip: 'fd00:1::101',
      port: 53,
      protocol: 'udp',
      mode: 'l3',
      healthCheck: { kind: 'udp', payloadHex: '00' },
      backends: [{ name: 'b', ip: 'fd00:3::2' }],
    },
  ]);
  const targets6 = probeTargets(spec6);
  const ports6 = assignProbePorts(targets6);
  const routing6 = renderProbeRouting(spec6, targets6, ports6);
  const port6 = (ip: string) => ports6.get(targets6.find((t) => t.backend.ip === ip)!.key)!;

  test('GIVEN IPv4 and IPv6 targets THEN the IPv6 routes and the rule on the same mark go through `ip -6`, after the IPv4 ones', () => {
    expect(routing6.commands).toEqual([
      ['ip', 'route', 'replace', '10.0.1.11', 'via', '10.0.1.11', 'dev', 'eth0', 'onlink', 'table', '61000'],
      ['ip', 'rule', 'add', 'pref', '1061', 'fwmark', String(PROBE_MARK), 'lookup', String(PROBE_ROUTE_TABLE)],
      ['ip', '-6', 'route', 'replace', 'fd00:3::2', 'dev', tunnelName('fd00:3::2', spec6), 'table', '61000'],
      ['ip', '-6', 'route', 'replace', 'fd00:1::11', 'via', 'fd00:1::11', 'dev', 'eth0', 'onlink', 'table', '61000'],
      ['ip', '-6', 'rule', 'add', 'pref', '1061', 'fwmark', String(PROBE_MARK), 'lookup', String(PROBE_ROUTE_TABLE)],
    ]);
  });

  test('GIVEN IPv6 targets THEN an ip6 table marks and rewrites them, and the netdev table maps their replies back, beside the IPv4 ones', () => {
    const [l2, l3] = [port6('fd00:1::11'), port6('fd00:3::2')];
    expect(routing6.nft).toContain(`table ip6 tula_dsr_probe {\n\tset probes {\n\t\ttypeof ip6 daddr . th sport\n\t\telements = {`);
    expect(routing6.nft).toContain(`fd00:1::11 . ${l2} : fd00:1::100`);
    expect(routing6.nft).toContain(`fd00:3::2 . ${l3} : fd00:1::101`);
    expect(routing6.nft).toContain('\t\tmeta l4proto { tcp, udp } th sport 61000-61999 ip6 daddr . th sport @probes meta mark set 61000\n');
    expect(routing6.nft).toContain('\t\tmeta l4proto { tcp, udp } th sport 61000-61999 ip6 daddr set ip6 daddr . th sport map @to_vip\n');
    expect(routing6.nft).toContain('\tmap from_vip6 {\n\t\ttypeof ip6 saddr . th dport : ip6 saddr\n');
    expect(routing6.nft).toContain(`fd00:1::100 . ${l2} : fd00:1::11`);
    expect(routing6.nft).toContain('\t\tmeta protocol ip6 meta l4proto { tcp, udp } th dport 61000-61999 ip6 saddr set ip6 saddr . th dport map @from_vip6\n');
    // and the IPv4 target stays in the ip table and the IPv4 map
    expect(routing6.nft).toContain(`\tset probes {\n\t\ttypeof ip daddr . th sport\n\t\telements = { 10.0.1.11 . ${port6('10.0.1.11')} }\n\t}`);
  });
});

describe('renderProbeRoutingCleanup', () => {
  test('GIVEN any leftovers THEN it removes the rules of both families, the retired UDP rule (1062) of earlier versions, the routes and every table', () => {
    expect(renderProbeRoutingCleanup()).toBe(
      [
        'while ip rule del pref 1061 2>/dev/null; do :; done',
        'while ip rule del pref 1062 2>/dev/null; do :; done',
        'ip route flush table 61000 2>/dev/null',
        'while ip -6 rule del pref 1061 2>/dev/null; do :; done',
        'ip -6 route flush table 61000 2>/dev/null',
        'nft delete table ip tula_dsr_probe 2>/dev/null',
        'nft delete table ip6 tula_dsr_probe 2>/dev/null',
        'nft delete table netdev tula_dsr_probe 2>/dev/null',
        'true',
      ].join('; '),
    );
  });
});
