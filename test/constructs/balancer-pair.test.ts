/**
 * BalancerPair: VIPs attached to the pair reach both members' specs (the same VIPs, each member's side of the pair),
 * and every mistake in the pair is reported by the pair's construct path with the field, the bad value and what is
 * allowed.
 */
import 'cdktf/lib/testing/adapters/jest';
import { TerraformStack, Testing } from 'cdktf';
import { Balancer, BalancerPair, BalancerProps, DsrVip } from '../../constructs';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KEEPALIVED_CHECK_SCRIPT, buildBalancerTable, planBalancerHost, renderKeepalivedConfig, renderNftDeclarative } from '../../model';
import { HOST_KEY } from '../support/common';
import { newApp, scratchDir, validationProblems } from '../support/stacks';

Testing.setupJest();
const root = scratchDir();

/* eslint-disable @typescript-eslint/no-explicit-any */
function pairStack(opts: { vrrp?: Record<string, any>; lb2?: Partial<BalancerProps>; mode?: 'l2' | 'l3'; flowCopyPort?: any } = {}) {
  const s = new TerraformStack(newApp(root()), 's');
  const lb = (id: string, host: string, over: Partial<BalancerProps> = {}) =>
    new Balancer(s, id, { ssh: { host, hostKey: HOST_KEY }, interface: 'eth0', subnet: '10.0.1.0/24', ...over });
  const lb1 = lb('lb1', '10.0.1.2');
  const lb2 = lb('lb2', '10.0.1.3', opts.lb2);
  const pair = new BalancerPair(s, 'edge', {
    primary: lb1,
    secondary: lb2,
    vrrp: (opts.vrrp ?? { virtualRouterId: 51 }) as any,
    ...(opts.flowCopyPort !== undefined && { flowCopyPort: opts.flowCopyPort }),
  });
  const web = new DsrVip(s, 'web', { balancer: pair, ip: '10.0.1.100', port: 80, mode: opts.mode ?? 'l2' });
  web.addBackend('web1', { ip: '10.0.1.11', mac: '02:00:00:00:00:11' });
  web.addBackend('web2', { ip: '10.0.1.12', mac: '02:00:00:00:00:12' });
  const any = new DsrVip(s, 'any', { balancer: pair, ip: '10.0.1.102', port: '*', algorithm: 'consistent-hash' });
  any.addBackend('web1', { ip: '10.0.1.11', mac: '02:00:00:00:00:11' });
  any.addBackend('web2', { ip: '10.0.1.12', mac: '02:00:00:00:00:12' });
  return { s, lb1, lb2, pair };
}

const problems = validationProblems;

describe('BalancerPair', () => {
  test('GIVEN VIPs on a pair WHEN the members render THEN both carry the same VIPs, their side of the pair, and the same table', () => {
    const { s, lb1, lb2 } = pairStack({ vrrp: { virtualRouterId: 51, advertIntervalSec: 0.2 } });
    Testing.synth(s, true);
    const [a, b] = [lb1.toSpec(), lb2.toSpec()];
    expect(a.pair).toEqual({
      path: 's/edge',
      name: 'edge',
      role: 'primary',
      peerAddress: '10.0.1.3',
      peerName: 'lb2',
      virtualRouterId: 51,
      priority: 150,
      advertIntervalSec: 0.2,
      preempt: true,
      flowCopyPort: 7407,
      // the flow copy accepts the other member by the host key its SSH target pins
      peerSsh: { host: '10.0.1.3', port: 22, hostKey: HOST_KEY },
    });
    expect(b.pair).toMatchObject({
      role: 'secondary',
      peerAddress: '10.0.1.2',
      peerName: 'lb1',
      priority: 100,
      peerSsh: { host: '10.0.1.2', port: 22, hostKey: HOST_KEY },
    });
    expect(b.vips).toEqual(a.vips);
    // the same seeds and slot tables on both members (given the same interface MAC): a flow hashes alike on either
    const facts = { interfaceMac: '02:00:00:00:00:02', backendMacs: {} };
    const table = (spec: typeof a) => renderNftDeclarative(buildBalancerTable(spec, facts, ['header']));
    expect(table(b)).toBe(table(a));
    // keepalived holds the VIPs: the agent adds none itself
    expect(planBalancerHost(a, facts).addresses).toEqual([]);
  });

  test('GIVEN a valid pair WHEN the primary renders THEN keepalived.conf has one VRRPv3 instance with unicast peers, the VIPs and the track script', () => {
    const { lb1 } = pairStack({ vrrp: { virtualRouterId: 51, advertIntervalSec: 0.2 } });
    const conf = planBalancerHost(lb1.toSpec(), { interfaceMac: '02:00:00:00:00:02' }).files.find((f) => f.path === '/etc/tula-dsr/keepalived.conf');
    expect(conf?.content).toMatchSnapshot();
  });

  test.each([
    [0, 2, 0],
    [24, 20, 6],
  ])(
    'GIVEN %i more IPv4 VIPs and an IPv6 VIP on a pair WHEN keepalived.conf renders THEN %i IPv4 addresses are advertised, %i IPv4 and the deprecated IPv6 one excluded, and the real keepalived -t accepts it',
    (more, advertised, excludedV4) => {
      const { lb1 } = pairStack({ vrrp: { virtualRouterId: 51 } });
      const spec = lb1.toSpec();
      const extra = Array.from({ length: more }, (_, i) => ({ ...spec.vips[0]!, name: `v${i}`, path: `s/v${i}`, ip: `10.0.1.${150 + i}` }));
      const six = { ...spec.vips[0]!, name: 'six', path: 's/six', ip: 'fd00:1::100' };
      const conf = renderKeepalivedConfig({ ...spec, vips: [...spec.vips, ...extra, six] });
      const block = (name: string) =>
        (new RegExp(`  ${name} \\{\\n([^}]*)  \\}`).exec(conf)?.[1] ?? '')
          .trim()
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean);
      const v4 = /^10\.0\.1\.\d+\/32 dev eth0$/;

      expect(block('virtual_ipaddress')).toHaveLength(advertised);
      expect(block('virtual_ipaddress').filter((l) => !v4.test(l))).toEqual([]);
      expect(block('virtual_ipaddress_excluded').filter((l) => v4.test(l))).toHaveLength(excludedV4);
      expect(block('virtual_ipaddress_excluded').filter((l) => !v4.test(l))).toEqual(['fd00:1::100/128 dev eth0 preferred_lft 0']);
      // keepalived refuses an IPv6 address among an IPv4 instance's advertised ones ("address family must match")
      const dir = mkdtempSync(join(tmpdir(), 'tula-keepalived-'));
      try {
        writeFileSync(join(dir, 'keepalived.conf'), conf.replace(KEEPALIVED_CHECK_SCRIPT, '/bin/true'));
        const script = `ip link add eth0 type veth peer name eth1 && ip link set eth0 up && keepalived -t -f ${dir}/keepalived.conf`;
        const check = spawnSync('unshare', ['-n', 'sh', '-c', script], { encoding: 'utf8' });
        expect({ status: check.status, output: `${check.stdout}${check.stderr}`.trim() }).toEqual({ status: 0, output: '' });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  test.each([
    [{ virtualRouterId: 0 }, ['[s/edge] vrrp.virtualRouterId: 0 is not allowed; use an integer from 1 to 255 (unique among the VRRP routers of the segment)']],
    [{}, ['[s/edge] vrrp.virtualRouterId: is required; use an integer from 1 to 255 (unique among the VRRP routers of the segment)']],
    [
      { virtualRouterId: 5, advertIntervalSec: 0.005 },
      ['[s/edge] vrrp.advertIntervalSec: 0.005 is not allowed; use seconds from 0.01 to 40.95 in steps of 0.01 (VRRPv3 counts centiseconds)'],
    ],
    [
      { virtualRouterId: 5, primaryPriority: 255 },
      ['[s/edge] vrrp.primaryPriority: 255 is not allowed; use an integer from 1 to 254 (255 is reserved for the address owner)'],
    ],
    [
      { virtualRouterId: 5, primaryPriority: 100, secondaryPriority: 100 },
      ["[s/edge] vrrp.secondaryPriority: 100 is not allowed; use a priority below the primary's (100)"],
    ],
    [{ virtualRouterId: 5, preempt: 'yes' }, ['[s/edge] vrrp.preempt: "yes" is not allowed; use true or false']],
    [
      { virtualRouterId: 5, advert: 1 },
      [
        '[s/edge] vrrp.advert: "advert" is not a known property; known properties are virtualRouterId, advertIntervalSec, primaryPriority, secondaryPriority, preempt',
      ],
    ],
  ])('GIVEN vrrp %j WHEN synthesized THEN the pair reports exactly %j', (vrrp, expected) => {
    expect(problems(pairStack({ vrrp }).s)).toEqual(expected);
  });

  test.each([
    [0, ['[s/edge] flowCopyPort: 0 is not allowed; use an integer from 1 to 65535']],
    [65536, ['[s/edge] flowCopyPort: 65536 is not allowed; use an integer from 1 to 65535']],
    ['7407', ['[s/edge] flowCopyPort: "7407" is not allowed; use an integer from 1 to 65535']],
  ])('GIVEN flowCopyPort %j WHEN synthesized THEN the pair reports exactly %j', (flowCopyPort, expected) => {
    expect(problems(pairStack({ flowCopyPort }).s)).toEqual(expected);
  });

  test('GIVEN flowCopyPort 9000 WHEN the members render THEN both take and send flows on it', () => {
    const { lb1, lb2 } = pairStack({ flowCopyPort: 9000 });
    expect([lb1.toSpec().pair?.flowCopyPort, lb2.toSpec().pair?.flowCopyPort]).toEqual([9000, 9000]);
  });

  test.each([
    [
      'the same host',
      { ssh: { host: '10.0.1.2', hostKey: HOST_KEY } },
      ['[s/edge] secondary.address: "10.0.1.2" is the primary\'s address too; a pair needs two hosts'],
    ],
    [
      'another subnet',
      { ssh: { host: '10.0.2.3', hostKey: HOST_KEY }, subnet: '10.0.2.0/24' },
      [
        '[s/edge] secondary.subnet: "10.0.2.0/24" differs from the primary\'s "10.0.1.0/24"; the members of a pair with L2 VIPs must share one segment (the VIPs move between them by ARP)',
        '[s/edge] primary.address: "10.0.1.2" is outside the other member\'s subnet 10.0.2.0/24; the members of a pair with L2 VIPs must share one segment',
        '[s/edge] secondary.address: "10.0.2.3" is outside the other member\'s subnet 10.0.1.0/24; the members of a pair with L2 VIPs must share one segment',
        // the secondary's own check of its L2 backends
        ...['web/web1', 'web/web2', 'any/web1', 'any/web2'].map(
          (b) =>
            `[s/${b}] ip: "10.0.1.1${b.slice(-1)}" is outside the balancer's subnet 10.0.2.0/24; an L2 backend must share the balancer's segment (use mode 'l3' for other subnets)`,
        ),
      ],
    ],
    [
      'no address',
      { ssh: { host: 'lb2.example.com', hostKey: HOST_KEY } },
      ["[s/edge] secondary.address: s/lb2 has no IPv4 address (set address, or an IPv4 ssh.host): keepalived's unicast peers need both members' addresses"],
    ],
  ])('GIVEN a secondary on %s WHEN synthesized THEN the pair reports it', (_what, lb2, expected) => {
    expect(problems(pairStack({ lb2: lb2 as Partial<BalancerProps> }).s)).toEqual(expected);
  });

  test('GIVEN a balancer with VIPs of its own, or one already paired WHEN it joins a pair THEN the pair refuses it', () => {
    const s = new TerraformStack(newApp(root()), 's');
    const lb = (id: string, host: string) => new Balancer(s, id, { ssh: { host, hostKey: HOST_KEY }, interface: 'eth0' });
    const [lb1, lb2, lb3] = [lb('lb1', '10.0.1.2'), lb('lb2', '10.0.1.3'), lb('lb3', '10.0.1.4')];
    new DsrVip(s, 'own', { balancer: lb3, ip: '10.0.1.100', port: 80 }).addBackend('web1', { ip: '10.0.1.11' });
    new BalancerPair(s, 'edge', { primary: lb1, secondary: lb2, vrrp: { virtualRouterId: 1 } });
    new BalancerPair(s, 'edge2', { primary: lb1, secondary: lb3, vrrp: { virtualRouterId: 2 } });
    new BalancerPair(s, 'edge3', { primary: lb2, secondary: lb2, vrrp: { virtualRouterId: 3 } });
    expect(problems(s)).toEqual([
      '[s/edge2] primary: s/lb1 is already a member of another balancer pair',
      '[s/edge2] secondary: s/lb3 already has VIPs (own); attach VIPs to the pair, so that both members serve them',
      '[s/edge3] primary: s/lb2 is already a member of another balancer pair',
      '[s/edge3] secondary: s/lb2 is already a member of another balancer pair',
    ]);
  });
});
