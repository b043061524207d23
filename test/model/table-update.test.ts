/**
 * The element-level transaction the agent loads when only some VIPs change (renderTableUpdate): what it deletes and
 * creates, in which order, its exact inverse, and the changes only a full reload can make.
 */
import { BalancerSpec, buildBalancerTable } from '../../model';
import { renderTableUpdate } from '../../model/nft/table-update';
import { backends, balancerSpec, factsFor } from '../support/render-fixtures';

const vips = (weights: (i: number) => number[], count = 3, mode: 'l2' | 'l3' = 'l2') =>
  Array.from({ length: count }, (_, i) => ({ name: `v${i}`, ip: `10.0.2.${i + 1}`, port: 80, mode, backends: backends(weights(i)) }));
const table = (spec: BalancerSpec, facts = factsFor(spec)) => buildBalancerTable(spec, facts);
const lines = (text: string) => text.split('\n').filter((l) => l && !l.startsWith('define '));

describe('renderTableUpdate', () => {
  const before = table(balancerSpec(vips(() => [1, 1])));
  const after = table(balancerSpec(vips((i) => (i === 1 ? [2, 1] : [1, 1]))));

  test("GIVEN one VIP's weights changed WHEN the update is rendered THEN the new chain comes first, the VIP's element is deleted by key and created anew, and nothing of the other VIPs is named", () => {
    const update = renderTableUpdate(before, after)!;

    const apply = lines(update.apply);
    expect(apply[0]).toBe('add chain netdev tula_dsr l2_tcp_port_rr3_t300');
    const deleteAt = apply.findIndex((l) => l.startsWith('delete element netdev tula_dsr vip_pool_port'));
    const createAt = apply.findIndex((l) => l.startsWith('create element netdev tula_dsr vip_pool_port'));
    expect(apply[deleteAt]).toBe('delete element netdev tula_dsr vip_pool_port { 10.0.2.2 . tcp . 80 }');
    expect(createAt).toBeGreaterThan(deleteAt);
    expect(update.apply).not.toMatch(/10\.0\.2\.[13] /);
    expect(apply.filter((l) => /element netdev tula_dsr (flows_|closing_|vip_stats_port)/.test(l))).toEqual([]);
    expect(update.vips).toEqual(['v1']);
  });

  test('GIVEN an update WHEN its undo is rendered THEN it is the update of the other direction, line for line', () => {
    const update = renderTableUpdate(before, after)!;
    const back = renderTableUpdate(after, before)!;

    // the same statements; only where a chain is flushed and deleted (last in both) and elements are ordered differ
    expect(lines(update.undo).sort()).toEqual(lines(back.apply).sort());
    expect(lines(update.undo).slice(-2)).toEqual(['flush chain netdev tula_dsr l2_tcp_port_rr3_t300', 'delete chain netdev tula_dsr l2_tcp_port_rr3_t300']);
  });

  test('GIVEN the same table WHEN the update is rendered THEN it is empty', () => {
    expect(renderTableUpdate(before, before)).toEqual({ apply: '', undo: '', changes: [], vips: [] });
  });

  test.each([
    ['a first L3 VIP (new maps)', balancerSpec([...vips(() => [1, 1]), { name: 'l3', ip: '10.0.2.9', port: 80, mode: 'l3', backends: backends([1, 1]) }])],
    [
      'another interface (the base chain)',
      balancerSpec(
        vips(() => [1, 1]),
        { interface: 'eth1' },
      ),
    ],
    ['a map that outgrows its declared size', balancerSpec(vips(() => [1, 1], 40))],
  ])('GIVEN %s WHEN the update is rendered THEN only a full reload can make it (null)', (_, spec) => {
    expect(renderTableUpdate(before, table(spec))).toBeNull();
  });

  test('GIVEN a backend MAC resolved differently WHEN the update is rendered THEN it is a full reload (the defines differ)', () => {
    const spec = balancerSpec(vips(() => [1, 1]));
    const moved = { ...factsFor(spec), backendMacs: { ...factsFor(spec).backendMacs, '10.0.1.11': '02:00:00:00:99:99' } };
    expect(renderTableUpdate(before, table(spec, moved))).toBeNull();
  });
});
