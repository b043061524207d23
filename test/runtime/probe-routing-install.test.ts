/**
 * How the runtime installs its probe routing: from scratch at a first start (the cleanup first: a runtime killed
 * with SIGKILL leaves its routing), and as an update in place on a reload, which must never tear the routing down
 * while the monitor probes (the probes in flight then fail). The commands are recorded here; that the kernel takes
 * them, and that reloads cost no probe, is proven in test/e2e/health.test.ts.
 */
import { ProbeRouting, assignProbePorts, probeTargets, renderProbeRouting, renderProbeRoutingCleanup } from '../../model';
import { installProbeRouting } from '../../runtime/probe-routing';
import { balancerSpec } from '../support/render-fixtures';

const TCP = { kind: 'tcp', port: 80 } as const;
const routingFor = (backends: { name: string; ip: string }[], vip = '10.0.1.100'): ProbeRouting => {
  const spec = balancerSpec([
    { name: 'web', ip: vip, port: 80, mode: 'l2', healthCheck: TCP, backends: backends.map((b) => ({ ...b, mac: '02:00:00:00:00:01' })) },
  ]);
  const targets = probeTargets(spec);
  return renderProbeRouting(spec, targets, assignProbePorts(targets));
};
const A = { name: 'a', ip: '10.0.1.11' };
const B = { name: 'b', ip: '10.0.1.12' };
const C = { name: 'c', ip: '10.0.1.13' };

const RULE_SHOWN = '1061:\tfrom all fwmark 0xee48 lookup 61000\n';

/** The commands an install runs; `ip rule show` answers with the rule unless `ruleGone`. */
async function record(routing: ProbeRouting, previous?: ProbeRouting, ruleGone = false): Promise<string[]> {
  const argvs: string[] = [];
  await installProbeRouting(
    routing,
    async (argv) => {
      argvs.push(argv.join(' '));
      return { code: 0, stdout: argv.includes('show') && !ruleGone ? RULE_SHOWN : '', stderr: '' };
    },
    previous,
  );
  return argvs;
}

describe('installProbeRouting', () => {
  test('GIVEN no routing installed by this process THEN it removes any left over, then loads the tables, the routes and the rule', async () => {
    expect(await record(routingFor([A, B]))).toEqual([
      `sh -c ${renderProbeRoutingCleanup()}`,
      'nft -f -',
      'ip route replace 10.0.1.11 via 10.0.1.11 dev eth0 onlink table 61000',
      'ip route replace 10.0.1.12 via 10.0.1.12 dev eth0 onlink table 61000',
      'ip rule add pref 1061 fwmark 61000 lookup 61000',
    ]);
  });

  test('GIVEN the same routing installed THEN a reload removes nothing: it loads the tables in one transaction, replaces the routes (one the kernel dropped comes back) and finds the rule in place', async () => {
    expect(await record(routingFor([A, B]), routingFor([A, B]))).toEqual([
      'nft -f -',
      'ip route replace 10.0.1.11 via 10.0.1.11 dev eth0 onlink table 61000',
      'ip route replace 10.0.1.12 via 10.0.1.12 dev eth0 onlink table 61000',
      'ip rule show pref 1061',
    ]);
  });

  test('GIVEN the rule gone (deleted by hand) THEN a reload adds it again, once', async () => {
    const argvs = await record(routingFor([A]), routingFor([A]), true);
    expect(argvs.slice(-2)).toEqual(['ip rule show pref 1061', 'ip rule add pref 1061 fwmark 61000 lookup 61000']);
  });

  test('GIVEN a backend replaced and another added THEN the tables are replaced in one transaction, the routes replaced, the stale one deleted, and nothing is removed first', async () => {
    expect(await record(routingFor([A, C, { name: 'd', ip: '10.0.1.14' }]), routingFor([A, B]))).toEqual([
      'nft -f -',
      'ip route replace 10.0.1.11 via 10.0.1.11 dev eth0 onlink table 61000',
      'ip route replace 10.0.1.13 via 10.0.1.13 dev eth0 onlink table 61000',
      'ip route replace 10.0.1.14 via 10.0.1.14 dev eth0 onlink table 61000',
      'ip route del 10.0.1.12 table 61000',
      'ip rule show pref 1061',
    ]);
  });

  test('GIVEN only the VIP changed THEN the tables are loaded again and the routes stay', async () => {
    const argvs = await record(routingFor([A, B], '10.0.1.101'), routingFor([A, B]));
    expect(argvs.filter((a) => !a.startsWith('ip route replace'))).toEqual(['nft -f -', 'ip rule show pref 1061']);
  });

  test('GIVEN an IPv6 backend comes (a rule of its own) THEN the routing is installed from scratch', async () => {
    const both = (() => {
      const spec = balancerSpec([
        { name: 'web', ip: '10.0.1.100', port: 80, mode: 'l2', healthCheck: TCP, backends: [{ ...A, mac: '02:00:00:00:00:01' }] },
        { name: 'web6', ip: 'fd00:1::100', port: 80, mode: 'l2', healthCheck: TCP, backends: [{ name: 'a6', ip: 'fd00:1::11', mac: '02:00:00:00:00:02' }] },
      ]);
      const targets = probeTargets(spec);
      return renderProbeRouting(spec, targets, assignProbePorts(targets));
    })();
    const argvs = await record(both, routingFor([A]));
    expect(argvs[0]).toBe(`sh -c ${renderProbeRoutingCleanup()}`);
    expect(argvs).toContain('ip -6 rule add pref 1061 fwmark 61000 lookup 61000');
  });

  test('GIVEN a stale route the kernel dropped already (its device went) THEN its delete fails and the reload still succeeds', async () => {
    const argvs: string[] = [];
    await installProbeRouting(
      routingFor([A]),
      async (argv) => {
        argvs.push(argv.join(' '));
        const del = argv.includes('del');
        return { code: del ? 2 : 0, stdout: argv.includes('show') ? RULE_SHOWN : '', stderr: del ? 'RTNETLINK answers: No such process' : '' };
      },
      routingFor([A, B]),
    );
    expect(argvs).toContain('ip route del 10.0.1.12 table 61000');
  });

  test('GIVEN a command that fails THEN the install fails naming it', async () => {
    await expect(
      installProbeRouting(routingFor([A]), async (argv) => ({
        code: argv[0] === 'nft' ? 1 : 0,
        stdout: '',
        stderr: argv[0] === 'nft' ? 'Error: syntax error' : '',
      })),
    ).rejects.toThrow('`nft -f -` failed (exit 1): Error: syntax error');
  });
});
