/**
 * A large balancer's VIP sections in groups (model/review.ts): past VIP_SECTIONS_KEYED_MAX VIPs each `vips:<group>`
 * trigger holds the sections of the VIPs whose name hashes to it, each element as one `MAP ELEMENT` line; split, each
 * section is exactly what it would be under its own `vip:<name>` key, so that the plan review can show them one by
 * one again.
 */
import {
  REVIEW_ADDRESSES_IN_FULL_MAX,
  fullAddressLines,
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

  test('GIVEN a grouped review WHEN its groups are split THEN each VIP section is byte for byte the one a smaller balancer gives it, and the group lists the same elements one line each', () => {
    const keyed = review(VIP_SECTIONS_KEYED_MAX);
    let compared = 0;
    for (const key of keysWith(grouped, VIP_GROUP_PREFIX)) {
      const sections = splitVipGroup(grouped[key]);
      for (const [name, text] of sections) {
        if (name === `v${VIP_SECTIONS_KEYED_MAX}`) continue;
        expect(text).toBe(keyed[`${VIP_SECTION_PREFIX}${name}`]);
        compared++;
      }
      // the group's own lines: each section's comment, then `MAP ELEMENT` for each element of its statements
      const lines = grouped[key].trimEnd().split('\n');
      const fromStatements = [...sections.values()].flatMap((text) => {
        const out: string[] = [];
        let map = '';
        for (const line of text.trimEnd().split('\n')) {
          const opens = /^add element netdev tula_dsr (\S+) \{$/.exec(line);
          if (line.startsWith('# ')) out.push(line);
          else if (opens) map = opens[1];
          else if (line.startsWith('\t')) out.push(`${map} ${line.slice(1).replace(/,$/, '')}`);
        }
        return out;
      });
      expect(lines).toEqual(fromStatements);
    }
    expect(compared).toBe(VIP_SECTIONS_KEYED_MAX);
  });

  test('GIVEN a grouped review WHEN its size is compared with the statements it stands for THEN it is at least a quarter smaller, and the table says how to read it', () => {
    const groups = keysWith(grouped, VIP_GROUP_PREFIX);
    const compact = groups.reduce((n, key) => n + grouped[key].length, 0);
    const statements = groups.reduce((n, key) => n + [...splitVipGroup(grouped[key]).values()].join('').length, 0);
    expect(compact).toBeLessThan(statements * 0.75);
    expect(grouped.ruleset).toContain('# In the "vips:" sections, each VIP\'s elements are lines MAP ELEMENT: add element netdev tula_dsr MAP { ELEMENT }\n');
    expect(review(VIP_SECTIONS_KEYED_MAX).ruleset).not.toContain('MAP ELEMENT');
  });

  test('GIVEN one address more than the review lists in full WHEN reviewed THEN addresses gives each as ADDRESS DEVICE after a line that says so', () => {
    const lines = grouped.addresses.trimEnd().split('\n');
    expect(lines).toHaveLength(REVIEW_ADDRESSES_IN_FULL_MAX + 2);
    expect(lines.slice(0, 3)).toEqual(['# ADDRESS DEVICE: each address is a /32 (IPv4) or /128 (IPv6) on that device', '10.0.2.1 eth0', '10.0.2.2 eth0']);
    expect(review(VIP_SECTIONS_KEYED_MAX).addresses.split('\n')[0]).toBe('10.0.2.1/32 dev eth0');
  });

  test('GIVEN the ADDRESS DEVICE lines WHEN put back in full for the plan review THEN they are what a smaller host lists, and other texts stay as they are', () => {
    const full = fullAddressLines(grouped.addresses);
    expect(full.split('\n').slice(0, 2)).toEqual(['10.0.2.1/32 dev eth0', '10.0.2.2/32 dev eth0']);
    expect(full.split('\n')).toHaveLength(REVIEW_ADDRESSES_IN_FULL_MAX + 2);
    expect(full).toBe(
      grouped.addresses
        .split('\n')
        .slice(1)
        .map((l) => (l ? l.replace(' ', '/32 dev ') : l))
        .join('\n'),
    );
    const small = review(VIP_SECTIONS_KEYED_MAX).addresses;
    expect(fullAddressLines(small)).toBe(small);
    const tunnelFirst =
      'ipip0: ipip local 10.0.0.2 remote any\n# ADDRESS DEVICE: each address is a /32 (IPv4) or /128 (IPv6) on that device\n2001:db8::1 lo\n10.0.0.9 ipip0\n';
    expect(fullAddressLines(tunnelFirst)).toBe('ipip0: ipip local 10.0.0.2 remote any\n2001:db8::1/128 dev lo\n10.0.0.9/32 dev ipip0\n');
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

test('GIVEN a group written in statements, as an earlier version wrote it WHEN split THEN each section stays as it is', () => {
  const statements = '# VIP a (t/a): x\nadd element netdev tula_dsr vip_pool_port {\n\t10.0.0.1 . tcp . 80 : 1:2\n}\n';
  const lines = '# VIP b (t/b): y\nvip_pool_port 10.0.0.2 . tcp . 80 : 1:2\nvip_pool_port 10.0.0.3 . tcp . 80 : 1:2\nvip_stats_port 10.0.0.2 . tcp . 80\n';
  expect(Object.fromEntries(splitVipGroup(statements + lines))).toEqual({
    a: statements,
    b: '# VIP b (t/b): y\nadd element netdev tula_dsr vip_pool_port {\n\t10.0.0.2 . tcp . 80 : 1:2,\n\t10.0.0.3 . tcp . 80 : 1:2\n}\nadd element netdev tula_dsr vip_stats_port {\n\t10.0.0.2 . tcp . 80\n}\n',
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
