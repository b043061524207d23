/**
 * The plan review's pure logic on plans built from the model's own specs and renderers (test/terraform/review.test.ts
 * runs it on real plans from the real terraform): what it refuses, what it recognises, the warnings, the size limit
 * and the Markdown's escaping.
 */
import {
  BackendHostSpec,
  BalancerSpec,
  HostSpec,
  POOL_SECTION_PREFIX,
  StrictSpecSchemas,
  renderBackendHostReview,
  renderBalancerReview,
  sha256Hex,
  stableJson,
} from '../../model';
import { GITHUB_COMMENT_LIMIT, PlanReadError, renderPlanReview } from '../../model/plan-review';
import { terraformReferences } from '../../model/plan-review/references';
import { fieldChanges } from '../../model/plan-review/spec-diff';
import { HOST_KEY, lb1Json, thrownBy } from '../support/common';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Vip = Record<string, any>;

function balancer(vips: Vip[], over: Record<string, unknown> = {}): BalancerSpec {
  return StrictSpecSchemas.BalancerSpecSchema.parse({
    ...lb1Json(),
    ...over,
    vips: vips.map((v) => ({ path: `s/${v.name}`, ip: '10.0.1.100', port: 80, backends: [], ...v })),
  });
}

const backend = (name: string, ip: string, weight = 1) => ({ path: `s/web/${name}`, name, ip, weight });

function backendHost(name: string, address: string, services: Vip[]): BackendHostSpec {
  return StrictSpecSchemas.BackendHostSpecSchema.parse({
    kind: 'backend',
    path: `s/${name}`,
    name,
    ssh: { host: address, hostKey: HOST_KEY },
    address,
    services,
  });
}

const triggersOf = (spec: HostSpec): Record<string, string> => {
  const text = stableJson(spec);
  return { spec: text, hash: sha256Hex(text), ...(spec.kind === 'balancer' ? renderBalancerReview(spec) : renderBackendHostReview(spec)) };
};

/** One host resource change as `terraform show -json` writes it for the terraform_data engine. */
function change(name: string, actions: string[], before?: HostSpec, after?: HostSpec | 'unknown'): Record<string, unknown> {
  const afterTriggers = after === 'unknown' ? { ruleset: '(rendered by the agent at apply time)\n' } : after && triggersOf(after);
  return {
    address: `terraform_data.${name}_host_0123ABCD`,
    type: 'terraform_data',
    name: `${name}_host_0123ABCD`,
    change: {
      actions,
      before: before ? { triggers_replace: triggersOf(before) } : null,
      after: afterTriggers ? { triggers_replace: afterTriggers } : null,
      after_unknown: after === 'unknown' ? { triggers_replace: { spec: true, hash: true } } : { triggers_replace: {} },
    },
  };
}

const plan = (changes: Record<string, unknown>[], extra: Record<string, unknown> = {}) =>
  JSON.stringify({ format_version: '1.2', terraform_version: '1.11.4', resource_changes: changes, ...extra });

const markdown = (text: string, maxChars?: number) => renderPlanReview([{ source: 'plan.json', text }], { format: 'markdown', maxChars });
const lines = (text: string) => markdown(text).output.split('\n');

describe('plans it refuses', () => {
  test.each<[string, string, string]>([
    [
      'a binary plan file',
      'PK\u0003\u0004\u0014\u0000',
      'this is a binary plan file (terraform plan -out); give the JSON Terraform prints for it: terraform show -json plan.json > plan.json',
    ],
    [
      'text that is not JSON',
      'Plan: 1 to add',
      'not JSON (Unexpected token \'P\', "Plan: 1 to add" is not valid JSON); give the output of terraform show -json PLAN > plan.json',
    ],
    ['JSON without format_version', '{"resource_changes":[]}', 'no format_version: this is not the output of terraform show -json PLAN > plan.json'],
    ['a JSON array', '[]', 'no format_version: this is not the output of terraform show -json PLAN > plan.json'],
    [
      'format 2.0',
      '{"format_version":"2.0","resource_changes":[]}',
      'format_version "2.0" is not supported; tula-dsr review reads format 1.x (terraform show -json of Terraform 1.x)',
    ],
    [
      'format 0.2 (Terraform 0.12)',
      '{"format_version":"0.2","resource_changes":[]}',
      'format_version "0.2" is not supported; tula-dsr review reads format 1.x (terraform show -json of Terraform 1.x)',
    ],
    [
      'Terraform state instead of a plan',
      '{"format_version":"1.0","values":{}}',
      'this is Terraform state (terraform show -json without a plan), not a plan: run terraform plan -out=PLAN, then terraform show -json PLAN > plan.json',
    ],
    [
      'a change without actions',
      '{"format_version":"1.2","resource_changes":[{"address":"a.b","type":"a","change":{}}]}',
      'unexpected plan structure at resource_changes[0].change.actions: Invalid input: expected array, received undefined',
    ],
  ])('GIVEN %s WHEN reviewed THEN it is refused with what to do instead', (_what, text, problem) => {
    const error = thrownBy(() => markdown(text));
    expect(error).toBeInstanceOf(PlanReadError);
    expect((error as PlanReadError).message).toBe(`plan.json: ${problem}`);
  });
});

describe('terraformReferences', () => {
  test.each<[string, string, string[]]>([
    [
      'an interpolation in the spec text (cdktf today)',
      '{"ip": "${terraform_data.backend_ip.output}", "host": "web3.example.net"}',
      ['terraform_data.backend_ip.output'],
    ],
    [
      "Terraform's jsonencode of an object (quoted values are not references)",
      '${jsonencode({"ip" = aws_instance.vm[0].private_ip, "host" = "web3.example.net", "n" = 10.5})}',
      ['aws_instance.vm[0].private_ip'],
    ],
    ['an interpolation inside a function argument', '${sha256("{\\"ip\\": \\"${var.backend_ip}\\"}")}', ['var.backend_ip']],
    ['module outputs and data sources', '${module.vm.ip} ${data.dns_a_record_set.web.addrs}', ['data.dns_a_record_set.web.addrs', 'module.vm.ip']],
    ['self and an escaped $${', '${self.triggers.spec} $${not.a.reference}', []],
  ])('GIVEN %s WHEN scanned THEN the references are found', (_what, text, expected) => {
    expect(terraformReferences(text)).toEqual(expected);
  });
});

test('GIVEN two specs that differ in nested and new fields WHEN compared THEN every field is named, dotted, with both values', () => {
  expect(
    fieldChanges(
      { a: 1, healthCheck: { path: '/', intervalSec: 2 }, list: [1] },
      { a: 1, healthCheck: { path: '/up', intervalSec: 2 }, list: [1, 2], b: true },
    ),
  ).toEqual([
    { field: 'b', before: undefined, after: true },
    { field: 'healthCheck.path', before: '/', after: '/up' },
    { field: 'list', before: [1], after: [1, 2] },
  ]);
});

describe('warnings', () => {
  const web = (backends: object[], over: Vip = {}) => ({ name: 'web', backends, ...over });

  test('GIVEN a VIP that moves to another address and a VIP whose backends are all drained THEN both are warned about', () => {
    const before = balancer([web([backend('web1', '10.0.1.11')]), { name: 'api', ip: '10.0.1.101', port: 443, backends: [backend('a', '10.0.1.12', 2)] }]);
    const after = balancer([
      web([backend('web1', '10.0.1.11')], { port: 8080 }),
      { name: 'api', ip: '10.0.1.101', port: 443, backends: [backend('a', '10.0.1.12', 0)] },
    ]);
    const out = lines(plan([change('lb1', ['create', 'delete'], before, after)]));
    expect(out).toContain('> - VIP `web` moves from 10.0.1.100 tcp/80 to 10.0.1.100 tcp/8080: clients of the old address lose service');
    expect(out).toContain('> - VIP `api` (10.0.1.101 tcp/443) stops taking new flows: every backend has weight 0');
    expect(out).toContain('> - backend `a` (10.0.1.12) of VIP `api` is drained (weight 2 → 0): no new flows, established flows stay');
    expect(out).toContain('  - port 80 → 8080');
  });

  test('GIVEN a destroyed backend host whose address a balancer still uses THEN the review warns that flows still go there', () => {
    const host = backendHost('web2', '10.0.1.12', [{ path: 's/web', ip: '10.0.1.100', port: 80, protocol: 'tcp', mode: 'l2' }]);
    const lb = balancer([web([backend('web2', '10.0.1.12')])]);
    const out = lines(plan([change('web2', ['delete'], host), change('lb1', ['no-op'], lb, lb)]));
    expect(out).toContain('> - backend host `web2` is destroyed: `tula-dsr remove` takes VIPs 10.0.1.100 off `lo` and restores its sysctls');
    expect(out).toContain('> - balancer `lb1` still sends new flows of VIP `web` to 10.0.1.12, whose host `web2` is destroyed');
  });

  test('GIVEN a spec this version cannot read THEN the review says so and still shows the exact diff', () => {
    const lb = balancer([web([backend('web1', '10.0.1.11')])]);
    const future = { ...triggersOf(lb), spec: stableJson({ ...lb, vips: [{ ...lb.vips[0], geoFence: { region: 'eu' } }] }) };
    const c = change('lb1', ['create', 'delete'], lb, lb);
    (c.change as any).after.triggers_replace = { ...future, ruleset: `${triggersOf(lb).ruleset}# one more line\n` };
    const out = lines(plan([c]));
    expect(out).toContain(
      '> - `lb1`: the spec does not match this tula-dsr version\'s schema (vips.0: Unrecognized key: "geoFence"); only the exact text diff is shown',
    );
    expect(out).toContain('+# one more line');
  });

  test('GIVEN a sensitive trigger THEN its text is not shown', () => {
    const lb = balancer([web([backend('web1', '10.0.1.11')])]);
    const c = change('lb1', ['create', 'delete'], lb, balancer([web([backend('web1', '10.0.1.11', 2)])]));
    const poolSection = Object.keys((c.change as any).after.triggers_replace).find((key) => key.startsWith(POOL_SECTION_PREFIX))!;
    (c.change as any).after_sensitive = { triggers_replace: { [poolSection]: true } };
    const out = markdown(plan([c])).output;
    expect(out).toContain('-(sensitive value: not shown)\n+(sensitive value, changed: not shown)');
    expect(out).not.toContain('weighted-round-robin over web1 10.0.1.11 ×2');
  });
});

describe('the Markdown', () => {
  test('GIVEN construct paths and rule text that hold Markdown and HTML THEN they stay text: code spans, escaped summary, a longer fence', () => {
    const lb = balancer([{ name: 'web', path: 's/<img src=x onerror=alert(1)>|`x`', backends: [backend('web1', '10.0.1.11')] }], { path: 's/lb|1' });
    const c = change('lb1', ['create', 'delete'], lb, lb);
    // An unchanged line (shown as context, ` ```…`) could close a ``` fence: the fence gets longer instead.
    (c.change as any).before.triggers_replace.ruleset += '```\n';
    (c.change as any).after.triggers_replace.ruleset += '```\n# </details> <script>\n';
    const out = markdown(plan([c])).output;
    expect(out).toContain('#### Balancer `lb1` (`s/lb|1`): replace');
    expect(out).toContain('````diff\n');
    expect(out).toContain('\n ```\n+# </details> <script>\n');
    expect(out).toContain('\n````\n\n</details>');
    // `</details>` inside the fence is text; the one that closes the block stands on its own line.
    expect(out.match(/^<\/details>$/gm)).toHaveLength(1);
  });

  test('GIVEN a review far over the limit WHEN fitted to 3,000 characters THEN it stays within, says what it cut, and keeps fences and details closed', () => {
    const vips = Array.from({ length: 300 }, (_, i) => ({
      name: `v${i}`,
      ip: `10.1.${Math.floor(i / 200)}.${(i % 200) + 1}`,
      backends: [backend('b', '10.0.1.11')],
    }));
    const text = plan([change('lb1', ['create'], undefined, balancer(vips))]);
    const full = markdown(text, Infinity);
    expect(full.cuts).toEqual([]);
    expect(full.output.length).toBeGreaterThan(GITHUB_COMMENT_LIMIT);
    for (const maxChars of [3_000, 20_000]) {
      const { output, cuts } = markdown(text, maxChars);
      expect(output.length).toBeLessThanOrEqual(maxChars);
      expect(cuts.length).toBeGreaterThan(0);
      expect(output).toContain(`> - This review was shortened to fit ${maxChars.toLocaleString('en-US')} characters (--max-chars)`);
      expect(output.match(/<details>/g)?.length).toBe(output.match(/<\/details>/g)?.length);
      expect((output.match(/^`{3,}/gm)?.length ?? 0) % 2).toBe(0);
    }
    const textFormat = renderPlanReview([{ source: 'plan.json', text }], { format: 'text', maxChars: 3_000 });
    expect(textFormat.output.length).toBeLessThanOrEqual(3_000);
  });
});
