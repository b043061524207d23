/**
 * Large specs and Terraform: a string's cost to Terraform grows with the square of its lines, so a spec past
 * SPEC_INDENTED_MAX_LINES is written on one line; smaller specs keep the indented text (and their generation).
 */
import 'cdktf/lib/testing/adapters/jest';
import { TerraformStack, Testing } from 'cdktf';
import { Balancer, BackendHost, DsrVip } from '../../constructs';
import { SPEC_INDENTED_MAX_LINES, specJson } from '../../constructs/spec-trigger';
import { formatIpv4, sha256Hex, stableJson } from '../../model';
import { ENGINE_LIST, newApp, scratchDir, ssh } from '../support/stacks';

Testing.setupJest();
const root = scratchDir();

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function balancerStack(engine: (typeof ENGINE_LIST)[number], vips: number): { json: Json; lb: Balancer } {
  const app = newApp(root(), engine);
  const stack = new TerraformStack(app, 'large');
  const lb = new Balancer(stack, 'lb', { ssh: ssh('10.10.0.2'), interface: 'eth0', subnet: '10.10.0.0/16' });
  const hosts = [0, 1, 2, 3].map((i) => new BackendHost(stack, `be${i}`, { ssh: ssh(`10.10.1.${i + 10}`) }));
  for (let v = 0; v < vips; v++) {
    const vip = new DsrVip(stack, `vip${v}`, { balancer: lb, ip: formatIpv4(0x0a0a0200 + v), port: 80 });
    hosts.forEach((host, i) => vip.addBackend(`be${i}`, { host }));
  }
  return { json: JSON.parse(Testing.synth(stack, true)) as Json, lb };
}

const triggersOf = (json: Json, engine: string): Record<string, string> => {
  const type = engine === 'null_resource' ? 'null_resource' : 'terraform_data';
  const [, resource] = Object.entries(json.resource[type] as Record<string, Json>).find(([name]) => name.startsWith('lb_host_'))!;
  return resource[engine === 'null_resource' ? 'triggers' : 'triggers_replace'];
};

describe.each(ENGINE_LIST)('engine %s', (engine) => {
  test('GIVEN a balancer whose indented spec would pass the line limit WHEN synthesized THEN the spec trigger is that spec on one line, and the hash is of that text', () => {
    const { json, lb } = balancerStack(engine, 60);
    const spec = lb.toSpec();
    expect(stableJson(spec).split('\n').length).toBeGreaterThan(SPEC_INDENTED_MAX_LINES);
    const triggers = triggersOf(json, engine);
    expect(triggers.spec).toBe(JSON.stringify(JSON.parse(stableJson(spec))));
    expect(triggers.spec).not.toContain('\n');
    expect(triggers.hash).toBe(sha256Hex(triggers.spec));
  });

  test('GIVEN a balancer whose indented spec stays under the line limit WHEN synthesized THEN the spec trigger keeps the indented text (an unchanged stack keeps its generation after upgrading)', () => {
    const { json, lb } = balancerStack(engine, 2);
    const triggers = triggersOf(json, engine);
    expect(triggers.spec).toBe(stableJson(lb.toSpec()));
    expect(triggers.hash).toBe(sha256Hex(stableJson(lb.toSpec())));
  });
});

test.each([
  ['exactly at the limit', SPEC_INDENTED_MAX_LINES, true],
  ['one line over the limit', SPEC_INDENTED_MAX_LINES + 1, false],
])('GIVEN a value whose indented JSON is %s WHEN written as a spec THEN it is indented only within the limit', (_, lines, indented) => {
  // an array of n numbers is n + 2 lines indented
  const value = Array.from({ length: lines - 2 }, (_, i) => i);
  const text = specJson(value);
  expect(text.split('\n').length).toBe(indented ? lines : 1);
  expect(JSON.parse(text)).toEqual(value);
});
