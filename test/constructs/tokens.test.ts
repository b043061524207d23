/**
 * Terraform tokens: an IP or host known only at apply time (another resource's attribute) is accepted at synth,
 * named in the plan's spec_review, written into the spec by Terraform's jsonencode (test/terraform/token-values
 * runs the real terraform with hostile values), hashed by Terraform, and rendered and checked by the agent.
 */
import 'cdktf/lib/testing/adapters/jest';
import { TerraformResource, TerraformStack, Testing } from 'cdktf';
import { Resource as NullResource } from '@cdktf/provider-null/lib/resource';
import { BackendHost, Balancer, DsrVip, Engine } from '../../constructs';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseHostSpec, readStackHosts } from '../../agent/spec-input';
import { HOST_KEY } from '../support/common';
import { ENGINE_LIST, newApp, scratchDir } from '../support/stacks';

Testing.setupJest();
const root = scratchDir();

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const PENDING = '(rendered by the agent at apply time: the spec holds values Terraform knows only after apply)\n';
const triggersKey = (engine: Engine) => (engine === 'null_resource' ? 'triggers' : 'triggers_replace');

/** The value source: a null_resource's id, or a terraform_data's output (both unknown until apply). */
function tokenSource(stack: TerraformStack, engine: Engine, id: string): { value: string; reference: string } {
  if (engine === 'null_resource') return { value: new NullResource(stack, id, {}).id, reference: `\${null_resource.${id}.id}` };
  const r = new TerraformResource(stack, id, { terraformResourceType: 'terraform_data' });
  return { value: r.getStringAttribute('output'), reference: `\${terraform_data.${id}.output}` };
}

function tokenStack(engine: Engine, opts: { badWeight?: boolean } = {}) {
  const stack = new TerraformStack(newApp(root(), engine), 's');
  const backendIp = tokenSource(stack, engine, 'backend_ip');
  const vmHost = tokenSource(stack, engine, 'vm_host');
  const lb = new Balancer(stack, 'lb1', { ssh: { host: '10.0.1.2', hostKey: HOST_KEY }, interface: 'eth0', subnet: '10.0.1.0/24' });
  const vm = new BackendHost(stack, 'vm', { ssh: { host: vmHost.value, hostKey: HOST_KEY } });
  const web = new DsrVip(stack, 'web', { balancer: lb, ip: '10.0.1.100', port: 80 });
  web.addBackend('web1', { ip: '10.0.1.11' });
  web.addBackend('tok', { ip: backendIp.value, weight: opts.badWeight ? 1.5 : 2 });
  const far = new DsrVip(stack, 'far', { balancer: lb, ip: '10.0.1.110', port: 443, mode: 'l3' });
  far.addBackend('vm', { host: vm });
  return { stack, backendIp, vmHost };
}

/** The host resource of `<id>/host` in the synthesized JSON. */
function hostResource(json: Json, id: string): Json {
  for (const type of ['null_resource', 'terraform_data']) {
    const all = (json.resource?.[type] ?? {}) as Record<string, Json>;
    const key = Object.keys(all).find((k) => k.startsWith(`${id}_host_`));
    if (key) return all[key];
  }
  throw new Error(`no host resource for ${id}`);
}

describe.each(ENGINE_LIST)('engine %s', (engine) => {
  let t: ReturnType<typeof tokenStack>;
  let json: Json;
  beforeAll(() => {
    t = tokenStack(engine);
    json = JSON.parse(Testing.synth(t.stack, true));
  });

  test("GIVEN a backend IP and a backend host's ssh.host taken from other resources' attributes WHEN synthesized with validations THEN synth accepts them", () => {
    expect(() => Testing.synth(t.stack, true)).not.toThrow();
  });

  /** The local that the spec trigger refers to, as Terraform reads it: JSON text with `${jsonencode(<reference>)}` holes. */
  const specTemplate = (id: string): string => {
    const reference = /^\$\{local\.([A-Za-z0-9_]+)\}$/.exec(hostResource(json, id)[triggersKey(engine)].spec)![1];
    return json.locals[reference];
  };
  /** The spec text Terraform would hand the agent, with `values` as what each reference resolves to. */
  const resolvedSpec = (id: string, values: Record<string, unknown>): string =>
    specTemplate(id).replace(/\$\{jsonencode\(([^()]+)\)\}/g, (_, reference: string) => JSON.stringify(values[`\${${reference}}`]));

  test('GIVEN a token backend IP WHEN synthesized THEN the spec trigger is a local whose template has Terraform jsonencode the value', () => {
    const triggers = hostResource(json, 'lb1')[triggersKey(engine)];
    expect(triggers.spec).toMatch(/^\$\{local\.lb1_host_[0-9A-F]{8}_spec\}$/);
    const template = specTemplate('lb1');
    expect(template).toContain(`"ip": \${jsonencode(${t.backendIp.reference.slice(2, -1)})},`);
    const spec = JSON.parse(resolvedSpec('lb1', { [t.backendIp.reference]: '10.0.1.12', [t.vmHost.reference]: '10.0.2.13' }));
    expect(spec.vips.find((v: Json) => v.name === 'web').backends).toEqual([
      { path: 's/web/web1', name: 'web1', ip: '10.0.1.11', weight: 1 },
      { path: 's/web/tok', name: 'tok', ip: '10.0.1.12', weight: 2 },
    ]);
    // The host that defaults its address to its token ssh.host: the L3 backend and the tunnel's remote.
    expect(spec.vips.find((v: Json) => v.name === 'far').backends[0].ip).toBe('10.0.2.13');
  });

  test("GIVEN a token in the spec WHEN synthesized THEN the hash trigger is Terraform's sha256() of the same local", () => {
    const triggers = hostResource(json, 'lb1')[triggersKey(engine)];
    expect(triggers.hash).toBe(triggers.spec.replace(/^\$\{(local\.[A-Za-z0-9_]+)\}$/, '$${sha256($1)}'));
  });

  test('GIVEN a token in the spec WHEN synthesized THEN the readable triggers say they are rendered at apply time, and spec_review names each token', () => {
    const lb = hostResource(json, 'lb1')[triggersKey(engine)];
    expect({ ruleset: lb.ruleset, addresses: lb.addresses, tunnels: lb.tunnels }).toEqual({ ruleset: PENDING, addresses: PENDING, tunnels: PENDING });
    const review = JSON.parse(lb.spec_review);
    expect(review.vips.find((v: Json) => v.name === 'web').backends[1].ip).toBe(`(known after apply: ${t.backendIp.reference.slice(2, -1)})`);
    const vm = hostResource(json, 'vm')[triggersKey(engine)];
    expect({ sysctl_file: vm.sysctl_file, addresses: vm.addresses, mss_clamp: vm.mss_clamp, boot_unit: vm.boot_unit }).toEqual({
      sysctl_file: PENDING,
      addresses: PENDING,
      mss_clamp: PENDING,
      boot_unit: PENDING,
    });
    const vmReview = JSON.parse(vm.spec_review);
    expect([vmReview.ssh.host, vmReview.address]).toEqual([
      `(known after apply: ${t.vmHost.reference.slice(2, -1)})`,
      `(known after apply: ${t.vmHost.reference.slice(2, -1)})`,
    ]);
  });

  test('GIVEN the synthesized stack WHEN the agent reads it without Terraform (tula-dsr check STACK_DIR) THEN it refuses: only terraform apply resolves the references', () => {
    const dir = path.join(root(), `read-${engine}`);
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'cdk.tf.json'), JSON.stringify(json));
    expect(() => readStackHosts(dir)).toThrow(
      `${engine}.${Object.keys(json.resource[engine]).find((k) => k.startsWith('lb1_host_'))}: spec: holds Terraform references that only \`terraform apply\` can resolve; deploy this stack with Terraform`,
    );
  });

  test('GIVEN the spec once Terraform resolved the references WHEN the agent validates it THEN it passes, and the same checks run on the values', () => {
    const resolved = (ip: string) => resolvedSpec('lb1', { [t.backendIp.reference]: ip, [t.vmHost.reference]: '10.0.2.13' });
    expect(() => parseHostSpec(resolved('10.0.1.12'))).not.toThrow();
    // A value that resolves to something the synth-time check would have refused is refused by the agent.
    expect(() => parseHostSpec(resolved('10.0.9.9'))).toThrow(
      "  - s/web/tok: ip: \"10.0.9.9\" is outside the balancer's subnet 10.0.1.0/24; an L2 backend must share the balancer's segment (use mode 'l3' for other subnets)",
    );
  });

  test('GIVEN a token IP next to a known mistake WHEN synthesized THEN the known values are still validated at synth', () => {
    expect(() => Testing.synth(tokenStack(engine, { badWeight: true }).stack, true)).toThrow(
      '[s/web/tok] weight: 1.5 is not allowed; use an integer from 0 to 1000 (0 drains the backend)',
    );
  });
});

test('GIVEN a backend IP taken from a resource of another stack WHEN the app is synthesized THEN cdktf wires the reference across stacks (an output there, remote state here) and the spec local reads it', () => {
  const app = newApp(root(), 'terraform_data');
  const infra = new TerraformStack(app, 'infra');
  const ip = new TerraformResource(infra, 'backend_ip', { terraformResourceType: 'terraform_data' }).getStringAttribute('output');
  const dsr = new TerraformStack(app, 'dsr');
  const lb = new Balancer(dsr, 'lb1', { ssh: { host: '10.0.1.2', hostKey: HOST_KEY }, interface: 'eth0', subnet: '10.0.1.0/24' });
  new DsrVip(dsr, 'web', { balancer: lb, ip: '10.0.1.100', port: 80 }).addBackend('far', { ip, mac: '02:00:0a:00:01:0b' });
  app.synth();
  const read = (stack: string) => JSON.parse(readFileSync(path.join(app.outdir, 'stacks', stack, 'cdk.tf.json'), 'utf8')) as Json;
  const [infraJson, dsrJson] = [read('infra'), read('dsr')];
  // the reference only becomes an output and a remote state if the local's template was resolved when cdktf looked
  const [output] = Object.keys(infraJson.output ?? {});
  expect(output).toMatch(/^cross-stack-output-terraform_databackend_ipoutput/);
  const [remote] = Object.keys(dsrJson.data?.terraform_remote_state ?? {});
  expect(remote).toBe('cross-stack-reference-input-infra');
  const [local] = Object.values(dsrJson.locals as Record<string, string>);
  expect(local).toContain(`\${jsonencode(data.terraform_remote_state.${remote}.outputs.${output})}`);
});
