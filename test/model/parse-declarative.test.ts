/**
 * The balancer's boot ruleset read back as the table the last apply loaded (parseNftDeclarative): the incremental
 * update diffs against it instead of a spec recorded in the state file.
 */
import { planBalancerHost, renderNftDeclarative } from '../../model';
import { parseNftDeclarative } from '../../model/nft/parse-declarative';
import { renderTableUpdate } from '../../model/nft/table-update';
import { BALANCER_CASES, backends, balancerSpec, factsFor } from '../support/render-fixtures';

const bootRuleset = (spec: Parameters<typeof planBalancerHost>[0]) => {
  const plan = planBalancerHost(spec, factsFor(spec));
  return { plan, text: plan.files.find((f) => f.path.endsWith('.nft'))!.content };
};

describe('parseNftDeclarative', () => {
  test.each(BALANCER_CASES.map((c) => [c.name, c.spec] as const))(
    'GIVEN the boot ruleset of %s WHEN it is read back THEN it renders as the declarative table the apply loaded, byte for byte',
    (_, spec) => {
      const { plan, text } = bootRuleset(spec);

      const table = parseNftDeclarative(text);

      expect(typeof table).toBe('object');
      expect(renderNftDeclarative(table as Exclude<typeof table, string>)).toBe(renderNftDeclarative(plan.table));
    },
  );

  test('GIVEN a table read back WHEN one VIP changes THEN the update is the one the built table gives, its VIP named', () => {
    const vips = (heavy?: number) =>
      Array.from({ length: 5 }, (_, i) => ({ name: `v${i}`, ip: `10.0.2.${i + 1}`, port: 80, backends: backends(i === heavy ? [2, 1] : [1, 1]) }));
    const { plan, text } = bootRuleset(balancerSpec(vips()));
    const after = planBalancerHost(balancerSpec(vips(2)), factsFor(balancerSpec(vips(2)))).table;

    const update = renderTableUpdate(parseNftDeclarative(text) as typeof plan.table, after)!;

    expect(update).toEqual({ ...renderTableUpdate(plan.table, after)!, vips: ['v2'] });
  });

  test('GIVEN a VIP removed from a table read back WHEN the update is rendered THEN its elements go, owned by no VIP the spec still has', () => {
    const vips = (count: number) => Array.from({ length: count }, (_, i) => ({ name: `v${i}`, ip: `10.0.2.${i + 1}`, port: 80, backends: backends([1, 1]) }));
    const { text } = bootRuleset(balancerSpec(vips(4)));
    const after = planBalancerHost(balancerSpec(vips(3)), factsFor(balancerSpec(vips(3)))).table;

    const update = renderTableUpdate(parseNftDeclarative(text) as typeof after, after)!;

    expect(update.vips).toEqual([]);
    expect(update.unnamed).toBe(true);
    expect(update.changes).toContainEqual(expect.stringMatching(/^- vip_pool_port 10\.0\.2\.4 \. tcp \. 80 : /));
  });

  test.each([
    ['a line outside the table', (t: string) => `${t}flush ruleset\n`, /^line \d+ is not in the layout tula-dsr writes: "flush ruleset"$/],
    [
      'a rule outside any chain',
      (t: string) => t.replace('\tchain ', '\tip daddr 10.0.0.1 drop\n\tchain '),
      /^line \d+ is not in the layout tula-dsr writes: "\\tip daddr 10\.0\.0\.1 drop"$/,
    ],
    ['no table at all', () => '# empty\n', /^it declares no table$/],
    ['a table cut short', (t: string) => t.slice(0, t.lastIndexOf('}')), /^the table is not closed$/],
  ])('GIVEN %s WHEN the file is read back THEN it is refused with where it goes wrong', (_, edit, message) => {
    const { text } = bootRuleset(BALANCER_CASES[0].spec);

    expect(parseNftDeclarative(edit(text))).toMatch(message);
  });
});
