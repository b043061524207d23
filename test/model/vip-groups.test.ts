/**
 * A large balancer's VIP sections in groups (model/review.ts): past VIP_SECTIONS_KEYED_MAX VIPs each `vips:<group>`
 * trigger holds the sections of the VIPs whose name hashes to it, each exactly as it would stand under its own
 * `vip:<name>` key, so that the plan review can show them one by one again.
 */
import {
  ReviewText,
  VIP_GROUPS,
  VIP_GROUP_PREFIX,
  VIP_SECTIONS_KEYED_MAX,
  VIP_SECTION_PREFIX,
  renderBalancerReview,
  splitVipGroup,
  vipSectionKey,
} from '../../model';
import { backends, balancerSpec, factsFor } from '../support/render-fixtures';

/** `count` VIPs v0…, the VIP `odd` (if any) with weights of its own. */
function review(count: number, odd?: string): ReviewText {
  const spec = balancerSpec(
    Array.from({ length: count }, (_, i) => ({
      name: `v${i}`,
      ip: `10.0.${2 + Math.floor(i / 250)}.${(i % 250) + 1}`,
      port: 80,
      backends: backends(`v${i}` === odd ? [5, 1, 1] : [1, 2, 3]),
    })),
  );
  return renderBalancerReview(spec, factsFor(spec));
}

const keysWith = (r: ReviewText, prefix: string) => Object.keys(r).filter((k) => k.startsWith(prefix));

test('GIVEN as many VIPs as keep keys of their own WHEN reviewed THEN each VIP has its own section key, and no group', () => {
  const r = review(VIP_SECTIONS_KEYED_MAX);
  expect(keysWith(r, VIP_SECTION_PREFIX)).toHaveLength(VIP_SECTIONS_KEYED_MAX);
  expect(keysWith(r, VIP_GROUP_PREFIX)).toEqual([]);
});

describe('one VIP more', () => {
  const count = VIP_SECTIONS_KEYED_MAX + 1;
  const grouped = review(count);

  test('GIVEN one VIP more WHEN reviewed THEN its sections are in groups, each VIP in the group its name hashes to, exactly once and in name order', () => {
    expect(keysWith(grouped, VIP_SECTION_PREFIX)).toEqual([]);
    const groups = keysWith(grouped, VIP_GROUP_PREFIX);
    expect(groups.length).toBeGreaterThan(VIP_GROUPS / 2);
    expect(groups.length).toBeLessThanOrEqual(VIP_GROUPS);
    for (const key of groups) expect(key).toMatch(/^vips:[0-9a-f]{3}$/);
    const seen: string[] = [];
    for (const key of groups) {
      const names = [...splitVipGroup(grouped[key]).keys()];
      expect(names).toEqual([...names].sort());
      for (const name of names) expect([name, vipSectionKey(name, count)]).toEqual([name, key]);
      seen.push(...names);
    }
    expect(seen.sort()).toEqual(Array.from({ length: count }, (_, i) => `v${i}`).sort());
  });

  test('GIVEN a grouped review WHEN its groups are split THEN each VIP section is byte for byte the one a smaller balancer gives it, and the groups are those sections joined', () => {
    const keyed = review(VIP_SECTIONS_KEYED_MAX);
    for (const key of keysWith(grouped, VIP_GROUP_PREFIX)) {
      const sections = splitVipGroup(grouped[key]);
      expect([...sections.values()].join('')).toBe(grouped[key]);
      for (const [name, text] of sections) if (name !== `v${VIP_SECTIONS_KEYED_MAX}`) expect(text).toBe(keyed[`${VIP_SECTION_PREFIX}${name}`]);
    }
  });

  test('GIVEN one VIP given weights of its own WHEN reviewed again THEN of the VIP sections only its group changes, and in it only its section', () => {
    const changed = review(count, 'v500');
    const differing = Object.keys({ ...grouped, ...changed }).filter((k) => grouped[k] !== changed[k]);
    expect(differing.filter((k) => k.startsWith(VIP_GROUP_PREFIX) || k.startsWith(VIP_SECTION_PREFIX))).toEqual([vipSectionKey('v500', count)]);
    const before = splitVipGroup(grouped[vipSectionKey('v500', count)]);
    const after = splitVipGroup(changed[vipSectionKey('v500', count)]);
    expect([...after.keys()]).toEqual([...before.keys()]);
    expect([...before.keys()].filter((name) => before.get(name) !== after.get(name))).toEqual(['v500']);
  });
});

test.each([
  ['', []],
  ['no section here\n', []],
  ['# VIP a (t/a): x\nline\n# VIP b (t/b): y\n', ['a', 'b']],
  ['# VIP a (t/a): x\n  # VIP not-a-section\n', ['a']],
])('GIVEN the group text %j WHEN split THEN the sections are named %j', (text, names) => {
  expect([...splitVipGroup(text).keys()]).toEqual(names);
});
