/**
 * Terraform tokens: an IP or host known only at apply time (another resource's attribute) is accepted at synth,
 * shown as a reference in the plan, hashed by Terraform, rendered by the agent, and refused by the agent's strict
 * schema while still unresolved.
 */
import 'cdktf/lib/testing/adapters/jest';
import { TerraformResource, TerraformStack, Testing } from 'cdktf';
import { Resource as NullResource } from '@cdktf/provider-null/lib/resource';
import { BackendHost, Balancer, DsrVip, Engine } from '../../constructs';
import { StrictSpecSchemas, checkBalancerSpec, checkSpec, formatIssue } from '../../model';
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

  test('GIVEN a token backend IP WHEN synthesized THEN the spec trigger holds the Terraform reference in place of the IP', () => {
    const triggers = hostResource(json, 'lb1')[triggersKey(engine)];
    const spec = JSON.parse(triggers.spec);
    expect(spec.vips.find((v: Json) => v.name === 'web').backends).toEqual([
      { path: 's/web/web1', name: 'web1', ip: '10.0.1.11', weight: 1 },
      { path: 's/web/tok', name: 'tok', ip: t.backendIp.reference, weight: 2 },
    ]);
    // The host that defaults its address to its token ssh.host: the L3 backend and the tunnel's remote.
    expect(spec.vips.find((v: Json) => v.name === 'far').backends[0].ip).toBe(t.vmHost.reference);
  });

  test('GIVEN a token in the spec WHEN synthesized THEN the hash trigger is a Terraform sha256() of the same spec text', () => {
    const triggers = hostResource(json, 'lb1')[triggersKey(engine)];
    expect(triggers.hash).toMatch(/^\$\{sha256\("[\s\S]*"\)\}$/);
    expect(triggers.hash).toContain(t.backendIp.reference);
    expect(triggers.hash).not.toMatch(/^[0-9a-f]{64}$/);
  });

  test('GIVEN a token in the spec WHEN synthesized THEN the readable triggers say they are rendered at apply time', () => {
    const lb = hostResource(json, 'lb1')[triggersKey(engine)];
    expect({ ruleset: lb.ruleset, addresses: lb.addresses, tunnels: lb.tunnels }).toEqual({ ruleset: PENDING, addresses: PENDING, tunnels: PENDING });
    const vm = hostResource(json, 'vm')[triggersKey(engine)];
    expect({ sysctl_file: vm.sysctl_file, addresses: vm.addresses, mss_clamp: vm.mss_clamp, boot_unit: vm.boot_unit }).toEqual({
      sysctl_file: PENDING,
      addresses: PENDING,
      mss_clamp: PENDING,
      boot_unit: PENDING,
    });
    expect(JSON.parse(vm.spec).ssh.host).toBe(t.vmHost.reference);
    expect(JSON.parse(vm.spec).address).toBe(t.vmHost.reference);
  });

  test('GIVEN the spec trigger with its reference still unresolved WHEN the agent validates it with the strict schema THEN the value is refused', () => {
    const specText: string = hostResource(json, 'lb1')[triggersKey(engine)].spec;
    const result = checkSpec(StrictSpecSchemas.BalancerSpecSchema, JSON.parse(specText), '(spec)', (v) => checkBalancerSpec(v));
    expect(result.ok ? [] : result.issues.map(formatIssue)).toEqual([
      `s/web/tok: ip: "${t.backendIp.reference}" is not an IPv4 address; use dotted-quad notation such as 10.0.1.100`,
      `s/far/vm: ip: "${t.vmHost.reference}" is not an IPv4 address; use dotted-quad notation such as 10.0.1.100`,
    ]);
  });

  test('GIVEN the spec trigger once Terraform resolved the references WHEN the agent validates it THEN it passes, and the same checks run on the values', () => {
    const specText: string = hostResource(json, 'lb1')[triggersKey(engine)].spec;
    const resolved = (ip: string) => JSON.parse(specText.replaceAll(t.backendIp.reference, ip).replaceAll(t.vmHost.reference, '10.0.2.13'));
    expect(checkSpec(StrictSpecSchemas.BalancerSpecSchema, resolved('10.0.1.12'), '(spec)', (v) => checkBalancerSpec(v)).ok).toBe(true);
    // A value that resolves to something the synth-time check would have refused is refused by the agent.
    const outside = checkSpec(StrictSpecSchemas.BalancerSpecSchema, resolved('10.0.9.9'), '(spec)', (v) => checkBalancerSpec(v));
    expect(outside.ok ? [] : outside.issues.map(formatIssue)).toEqual([
      "s/web/tok: ip: \"10.0.9.9\" is outside the balancer's subnet 10.0.1.0/24; an L2 backend must share the balancer's segment (use mode 'l3' for other subnets)",
    ]);
  });

  test('GIVEN a token IP next to a known mistake WHEN synthesized THEN the known values are still validated at synth', () => {
    expect(() => Testing.synth(tokenStack(engine, { badWeight: true }).stack, true)).toThrow(
      '[s/web/tok] weight: 1.5 is not allowed; use an integer from 0 to 1000 (0 drains the backend)',
    );
  });
});
