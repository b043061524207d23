/**
 * Slot tables stay as small as the weights allow and bounded: weights are reduced by their greatest common divisor,
 * a VIP whose table would exceed MAX_SLOTS_PER_VIP is refused with a clear error (at synth and by the agent), and
 * tables with more elements than a function call takes arguments render without "Maximum call stack size exceeded".
 */
import 'cdktf/lib/testing/adapters/jest';
import { TerraformStack, Testing } from 'cdktf';
import { Balancer, DsrVip } from '../../constructs';
import {
  ALGORITHMS,
  MAX_SLOTS_PER_VIP,
  SpecError,
  planBalancerHost,
  renderBalancerReview,
  renderNftDeclarative,
  renderNftReload,
  slotCount,
  smoothWeightedSequence,
} from '../../model';
import { parseHostSpec } from '../../agent/spec-input';
import { HOST_KEY } from '../support/common';
import { poolSectionOf } from '../support/review';
import { newApp, scratchDir } from '../support/stacks';
import { FRESH, backends, balancerSpec, factsFor } from '../support/render-fixtures';

Testing.setupJest();
const root = scratchDir();

/** `count` backends on the balancer's /24 (from .3), each with the weight `weightOf(i)` gives. */
const many = (count: number, weightOf: (i: number) => number) =>
  backends(
    Array.from({ length: count }, (_, i) => weightOf(i)),
    3,
  );

/** Lines of a pool's section in the review that are slot elements (`<pool> . <slot> : $mac_…`). */
const slotLines = (section: string) => section.split('\n').filter((l) => /^\t[0-9a-f]+:[0-9a-f]+ \. \d+ : \$mac_/.test(l));

/** Weights alternating 1000 and 999: their divisor is 1, so 65 backends need 64,968 slots (just below the bound), 66 need 65,967. */
const NEAR_BOUND = (i: number) => 1000 - (i % 2);

describe('weights reduced by their greatest common divisor', () => {
  test('GIVEN 99 backends at weight 1000 WHEN the balancer is rendered THEN the VIP has 99 slots, not 99,000', () => {
    const spec = balancerSpec([{ name: 'web', ip: '10.0.1.250', port: 80, backends: many(99, () => 1000) }]);
    expect(slotLines(poolSectionOf(renderBalancerReview(spec, factsFor(spec)), 'web'))).toHaveLength(99);
  });

  test('GIVEN weights 200:400:600 WHEN sequenced THEN the cycle is the one of 1:2:3', () => {
    const names = (weights: number[]) => weights.map((weight, i) => ({ name: `be${i + 1}`, weight }));
    expect(smoothWeightedSequence(names([200, 400, 600]))).toEqual(smoothWeightedSequence(names([1, 2, 3])));
    expect(smoothWeightedSequence(names([1, 2, 3]))).toEqual(['be3', 'be2', 'be1', 'be3', 'be2', 'be3']);
  });

  test.each(
    ALGORITHMS.map(
      (a) =>
        [
          a,
          {
            'round-robin': 3,
            'weighted-round-robin': 6,
            'source-hash': 6,
            'consistent-hash': 1021,
            'least-connections': 120,
            'weighted-least-connections': 120,
          }[a],
        ] as const,
    ),
  )('GIVEN weights 0:300:600:900 WHEN the slots of a %s VIP are counted THEN there are %i', (algorithm, slots) => {
    expect(
      slotCount(
        algorithm,
        [0, 300, 600, 900].map((weight, i) => ({ name: `be${i}`, weight })),
      ),
    ).toBe(slots);
  });

  test('GIVEN 130 backends at weight 1000 WHEN a stack is synthesized THEN synth succeeds with 130 slots', () => {
    const stack = new TerraformStack(newApp(root()), 's');
    const lb = new Balancer(stack, 'lb1', { ssh: { host: '10.0.1.2', hostKey: HOST_KEY }, interface: 'eth0', subnet: '10.0.1.0/24' });
    const web = new DsrVip(stack, 'web', { balancer: lb, ip: '10.0.1.250', port: 80 });
    for (const b of many(130, () => 1000)) web.addBackend(b.name, { ip: b.ip, weight: 1000 });
    const json = JSON.parse(Testing.synth(stack, true));
    const [resource] = Object.values(json.resource.null_resource) as { triggers: Record<string, string> }[];
    expect(slotLines(poolSectionOf(resource.triggers, 'web'))).toHaveLength(130);
  });
});

describe('the bound on slots per VIP', () => {
  const tooMany = (algorithm: string) => [{ name: 'web', ip: '10.0.1.100', port: 80, algorithm, backends: many(66, NEAR_BOUND) }];
  const message = (slots: number) =>
    `the weights need ${slots} slots (their sum divided by their greatest common divisor); a VIP's table holds at most ${MAX_SLOTS_PER_VIP} slots: use smaller weights or weights with a common divisor, or algorithm 'consistent-hash' (a fixed table of hashTableSize slots)`;

  test.each(['weighted-round-robin', 'source-hash'])(
    'GIVEN a %s VIP whose weights need 65,967 slots WHEN the agent parses the spec THEN it is refused',
    (algorithm) => {
      const spec = {
        ...balancerSpec([]),
        vips: tooMany(algorithm).map((v) => ({ ...v, path: 't/lb1/web', backends: v.backends.map((b) => ({ ...b, path: `t/lb1/web/${b.name}` })) })),
      };
      expect(() => parseHostSpec(JSON.stringify(spec))).toThrow(SpecError);
      expect(() => parseHostSpec(JSON.stringify(spec))).toThrow(`  - t/lb1/web: backends: ${message(65967)}`);
    },
  );

  test('GIVEN such a VIP in a stack WHEN synthesized THEN synth names the VIP, the field and the slot count', () => {
    const stack = new TerraformStack(newApp(root()), 's');
    const lb = new Balancer(stack, 'lb1', { ssh: { host: '10.0.1.2', hostKey: HOST_KEY }, interface: 'eth0', subnet: '10.0.1.0/24' });
    const web = new DsrVip(stack, 'web', { balancer: lb, ip: '10.0.1.100', port: 80 });
    for (const b of many(66, NEAR_BOUND)) web.addBackend(b.name, { ip: b.ip, weight: b.weight });
    expect(() => Testing.synth(stack, true)).toThrow(`[s/web] backends: ${message(65967)}`);
  });

  test('GIVEN the same backends on a consistent-hash VIP WHEN checked THEN they are accepted (its table size is fixed)', () => {
    expect(() => balancerSpec(tooMany('consistent-hash') as never)).not.toThrow();
  });
});

describe('tables larger than a function call takes arguments', () => {
  test('GIVEN three VIPs just below the bound (194,902 slot elements in one map) WHEN rendered every way THEN all of them are there', () => {
    // each VIP's weights differ a little, so that each has a slot pool (and a table) of its own
    const weightsOf = [NEAR_BOUND, (i: number) => NEAR_BOUND(i + 1), (i: number) => NEAR_BOUND(i) - (i === 64 ? 1 : 0)];
    const vips = ['100', '101', '102'].map((last, k) => ({ name: `vip${last}`, ip: `10.0.1.${last}`, port: 80, backends: many(65, weightsOf[k]) }));
    const slots = weightsOf.map((w) => Array.from({ length: 65 }, (_, i) => w(i)).reduce((a, b) => a + b, 0));
    expect(slots).toEqual([64968, 64967, 64967]);
    const spec = balancerSpec(vips);
    const plan = planBalancerHost(spec, factsFor(spec));
    const slotMap = plan.table.maps.find((m) => m.name === 'slots_l2')!;
    expect(slotMap.elements).toHaveLength(194902);
    const declarative = renderNftDeclarative(plan.table);
    expect(declarative.split('\n').filter((l) => /^\t\t\t[0-9a-f]+:[0-9a-f]+ \. \d+ : /.test(l))).toHaveLength(194902);
    expect(renderNftReload(plan.table, FRESH)).toContain(' . 64967 : $mac_');
    expect(slotLines(poolSectionOf(renderBalancerReview(spec, factsFor(spec)), 'vip100'))).toHaveLength(64968);
  });
});
