/**
 * The agent makes a balancer's plan in two steps: prepareBalancerHost while the host runs the facts script, then
 * planBalancerHost once the facts have come. The plan it gets must be the plan made in one step, byte for byte,
 * whatever MACs the facts give, and one preparation serves several sets of facts (a run that gathers its facts again).
 */
import {
  BalancerFacts,
  BalancerSpec,
  balancerHeader,
  buildBalancerTable,
  planBalancerHost,
  prepareBalancerHost,
  renderBalancerBootRuleset,
  renderNftDeclarative,
  withDefines,
} from '../../model';
import { BALANCER_CASES, LB_MAC, backends, balancerSpec, factsFor, macOf, pairMember } from '../support/render-fixtures';

/** The fixtures, and the MACs given in the spec itself (the interface's, and one backend's). */
const SPECS: { name: string; spec: BalancerSpec }[] = [
  ...BALANCER_CASES,
  {
    name: 'configured MACs (interface and one backend)',
    spec: {
      ...balancerSpec([
        {
          name: 'web',
          ip: '10.0.1.100',
          port: 80,
          backends: backends([1, 1]).map((b, i) => (i === 0 ? { ...b, mac: '02:00:00:00:0a:01' } : b)),
        },
      ]),
      mac: '02:00:00:00:00:01',
    },
  },
  { name: 'pair member', spec: pairMember(BALANCER_CASES[0].spec) },
];

/** From none known (the plan review) to all resolved, and back: a preparation must carry nothing from one to the next. */
function factsVariants(spec: BalancerSpec): [string, BalancerFacts][] {
  const all = factsFor(spec);
  const [firstIp] = Object.keys(all.backendMacs ?? {});
  const { [firstIp]: _left, ...others } = all.backendMacs ?? {};
  return [
    ['every MAC resolved', all],
    ['none resolved', {}],
    ['the interface only', { interfaceMac: LB_MAC }],
    ['one backend unresolved', { interfaceMac: LB_MAC, backendMacs: others }],
    [
      'other MACs',
      {
        interfaceMac: '02:aa:00:00:00:01',
        backendMacs: Object.fromEntries(Object.keys(all.backendMacs ?? {}).map((ip) => [ip, macOf(ip).replace(/^02:00/, '02:ee')])),
      },
    ],
  ];
}

describe('a balancer plan prepared before its facts', () => {
  test.each(SPECS.map((c) => [c.name, c.spec] as const))(
    'GIVEN %s WHEN one preparation is planned with each set of facts THEN each plan is the one made in a single step',
    (_name, spec) => {
      const prepared = prepareBalancerHost(spec);
      for (const [what, facts] of factsVariants(spec)) {
        // built and rendered in one step, from scratch
        const table = buildBalancerTable(spec, facts, balancerHeader(spec));
        const ruleset = renderBalancerBootRuleset(table);

        const plan = planBalancerHost(spec, facts, prepared);

        expect({ what, table: plan.table }).toEqual({ what, table });
        expect({ what, ruleset: plan.files[0].content }).toEqual({ what, ruleset });
        const fresh = prepareBalancerHost(spec);
        expect([plan.files.slice(1), plan.tunnels, plan.addresses, plan.modules]).toEqual([fresh.otherFiles, fresh.tunnels, fresh.addresses, fresh.modules]);
      }
    },
  );

  test('GIVEN the fixtures THEN the comparison covers tables whose defines the facts fill in, and ones without any', () => {
    const withDefines = SPECS.filter((c) => planBalancerHost(c.spec, factsFor(c.spec)).table.defines.some((d) => d.value !== null));
    const l3Only = SPECS.filter((c) => planBalancerHost(c.spec).table.defines.length === 0);
    expect(withDefines.length).toBeGreaterThanOrEqual(10);
    expect(l3Only.length).toBeGreaterThanOrEqual(5);
  });

  test('GIVEN resolved MACs WHEN planned from a preparation THEN the boot ruleset defines them, where the preparation had them pending', () => {
    const spec = BALANCER_CASES[0].spec;
    const prepared = prepareBalancerHost(spec);
    const facts = factsFor(spec);
    const ruleset = planBalancerHost(spec, facts, prepared).files[0].content;
    expect(renderNftDeclarative(prepared.draft.table)).toContain(`# define lb_mac = <MAC of eth0, read on the balancer at apply time>`);
    expect(ruleset).toContain(`define lb_mac = ${LB_MAC}  # MAC of eth0, read on the balancer at apply time`);
    for (const ip of Object.keys(facts.backendMacs!)) expect(ruleset).toContain(` = ${macOf(ip)}  # MAC of ${ip}, resolved on the balancer at apply time`);
    expect(ruleset).not.toContain('# define ');
  });
});

describe('a table given other defines', () => {
  test('GIVEN a rendered table WHEN given other defines THEN it renders as a table built with them, and the first is unchanged', () => {
    const spec = BALANCER_CASES[0].spec;
    const facts = factsFor(spec);
    const pending = buildBalancerTable(spec);
    const before = renderNftDeclarative(pending);
    const resolved = buildBalancerTable(spec, facts);

    const given = withDefines(pending, resolved.defines);

    expect(renderNftDeclarative(given)).toBe(renderNftDeclarative(resolved));
    expect(renderNftDeclarative(pending)).toBe(before);
    expect(before).not.toBe(renderNftDeclarative(resolved));
  });
});
