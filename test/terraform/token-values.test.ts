/**
 * Token values reach the agent as data, whatever they hold. A backend IP, a weight and a backend host's ssh.host
 * come from Terraform variables; the REAL terraform applies the stack with hostile values (quotes, backslashes, line
 * breaks, `}`, Terraform's own template syntax) and the provisioner commands are replaced by a stand-in that keeps
 * what the agent would receive, which the agent's own parseHostSpec then reads. Both engines. A value unknown at
 * plan time still leaves a readable spec in the plan.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { App, LocalBackend, TerraformResource, TerraformStack, TerraformVariable } from 'cdktf';
import { BackendHost, Balancer, DsrVip, ENGINE_CONTEXT_KEY, Engine } from '../../constructs';
import { SpecError, formatIssue, sha256Hex } from '../../model';
import { parseHostSpec, readStackHosts } from '../../agent/spec-input';
import { HOST_KEY } from '../support/common';
import { ENGINE_LIST } from '../support/stacks';
import { prepareTerraformEnv, runTerraform } from '../../lab/terraform/env';

jest.setTimeout(120_000);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Synthesizes the stack into `dir/out` and points every provisioner at a stand-in that keeps the spec it gets. */
function synth(dir: string, engine: Engine, unknownIp = false): string {
  const app = new App({ outdir: path.join(dir, 'out'), context: { [ENGINE_CONTEXT_KEY]: engine } });
  const stack = new TerraformStack(app, 's');
  new LocalBackend(stack, { path: 'terraform.tfstate' });
  const ip = unknownIp
    ? new TerraformResource(stack, 'backend_ip', { terraformResourceType: 'terraform_data' }).getStringAttribute('id')
    : new TerraformVariable(stack, 'backend_ip', { type: 'string' }).stringValue;
  const weight = new TerraformVariable(stack, 'weight', { type: 'number', default: 2 });
  const vmHost = new TerraformVariable(stack, 'vm_host', { type: 'string', default: '10.9.1.13' });
  const lb = new Balancer(stack, 'lb', { ssh: { host: '10.9.0.2', hostKey: HOST_KEY }, interface: 'eth0', subnet: '10.9.0.0/24' });
  const web = new DsrVip(stack, 'web', { balancer: lb, ip: '10.9.0.100', port: 80 });
  web.addBackend('web1', { ip: '10.9.0.11' });
  web.addBackend('tok', { ip, weight: weight.numberValue });
  const vm = new BackendHost(stack, 'vm', { ssh: { host: vmHost.stringValue, hostKey: HOST_KEY } });
  new DsrVip(stack, 'far', { balancer: lb, ip: '10.9.0.110', port: 443, mode: 'l3' }).addBackend('vm', { host: vm });
  app.synth();
  const stackDir = path.join(dir, 'out', 'stacks', 's');
  const file = path.join(stackDir, 'cdk.tf.json');
  const json = JSON.parse(readFileSync(file, 'utf8')) as Json;
  mkdirSync(path.join(dir, 'got'), { recursive: true });
  for (const [key, resource] of Object.entries((json.resource[engine] ?? {}) as Record<string, Json>)) {
    for (const p of resource.provisioner ?? []) {
      p['local-exec'].command = p['local-exec'].when === 'destroy' ? ':' : `printf '%s' "$TULA_DSR_SPEC_GZ_0" > ${path.join(dir, 'got', key)}`;
    }
  }
  writeFileSync(file, JSON.stringify(json));
  return stackDir;
}

async function terraformIn(dir: string, engine: Engine): Promise<(args: string[]) => Promise<string>> {
  const env =
    engine === 'null_resource'
      ? (await prepareTerraformEnv(dir)).env
      : { ...process.env, TF_CLI_CONFIG_FILE: path.join(dir, 'cli.tfrc'), CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1' };
  writeFileSync(path.join(dir, 'cli.tfrc'), '');
  return async (args) => {
    const r = await runTerraform([...args, '-no-color', '-input=false'], { cwd: path.join(dir, 'out', 'stacks', 's'), env, timeoutMs: 90_000 });
    if (r.code !== 0) throw new Error(`terraform ${args.join(' ')}: ${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
}

/** What the agent received for a host (`lb` or `vm`), and the hash trigger Terraform recorded for it. */
function received(dir: string, engine: Engine, id: string): { text: string; hash: string } {
  const key = Object.keys(JSON.parse(readFileSync(path.join(dir, 'out', 'stacks', 's', 'cdk.tf.json'), 'utf8')).resource[engine]).find((k) =>
    k.startsWith(`${id}_host_`),
  )!;
  const text = gunzipSync(Buffer.from(readFileSync(path.join(dir, 'got', key), 'utf8'), 'base64')).toString('utf8');
  const state = JSON.parse(readFileSync(path.join(dir, 'out', 'stacks', 's', 'terraform.tfstate'), 'utf8')) as Json;
  const instance = state.resources.find((r: Json) => r.type === engine && r.name === key).instances[0].attributes;
  const triggers = engine === 'null_resource' ? instance.triggers : instance.triggers_replace.value;
  return { text, hash: triggers.hash };
}

/** The problems the agent reports for a spec text, as it prints them. */
function agentProblems(text: string): string[] {
  try {
    parseHostSpec(text);
    return [];
  } catch (error) {
    if (!(error instanceof SpecError)) throw error;
    return error.issues.map(formatIssue);
  }
}

const notIpv4 = (value: string) => `${JSON.stringify(value)} is not an IPv4 address; use dotted-quad notation such as 10.0.1.100`;
/** A VIP's or backend's address may be of either family. */
const notIp = (value: string) => `${JSON.stringify(value)} is not an IP address; use an IPv4 address such as 10.0.1.100 or an IPv6 address such as fd00:1::100`;

describe.each(ENGINE_LIST)('engine %s', (engine) => {
  let dir: string;
  let tf: (args: string[]) => Promise<string>;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tula-tokens-'));
    synth(dir, engine);
    tf = await terraformIn(dir, engine);
    await tf(['init']);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** `terraform apply` with these variable values (a JSON var file, so any character gets through). */
  async function applyWith(vars: Record<string, unknown>): Promise<void> {
    writeFileSync(path.join(dir, 'vars.tfvars.json'), JSON.stringify(vars));
    await tf(['apply', '-auto-approve', `-var-file=${path.join(dir, 'vars.tfvars.json')}`]);
  }

  test('GIVEN ordinary values WHEN terraform applies THEN the agent gets them in place, and the hash trigger is the sha256 of what it got', async () => {
    await applyWith({ backend_ip: '10.9.0.12', weight: 3, vm_host: '10.9.1.13' });

    const lb = received(dir, engine, 'lb');
    const spec = parseHostSpec(lb.text) as Json;
    expect(spec.vips.find((v: Json) => v.name === 'web').backends.map((b: Json) => [b.name, b.ip, b.weight])).toEqual([
      ['web1', '10.9.0.11', 1],
      ['tok', '10.9.0.12', 3],
    ]);
    expect(lb.hash).toBe(sha256Hex(lb.text));
    const vm = received(dir, engine, 'vm');
    expect((parseHostSpec(vm.text) as Json).ssh).toEqual({ host: '10.9.1.13', port: 22, user: 'root', hostKey: HOST_KEY });
    expect(vm.hash).toBe(sha256Hex(vm.text));
  });

  test.each([
    ['the injection that added a backend', '10.0.1.11", "mac": "52:54:00:12:34:56", "name": "evil", "path": "x", "weight": 1000}, {"ip": "10.0.1.66'],
    ['backslashes before quotes', '10.9.0.12\\", \\"weight\\": 1000, \\"x\\": \\"'],
    ['a line break and closing braces', '10.9.0.12"\n}]}, {"kind": "backend", "x": "'],
    ["Terraform's own template syntax", '${var.weight}%{ if true }x%{ endif }$${y}'],
  ])('GIVEN a backend IP holding %s WHEN terraform applies THEN the agent reads one backend with exactly that IP, and refuses it', async (_what, hostile) => {
    await applyWith({ backend_ip: hostile, weight: 3, vm_host: '10.9.1.13' });

    const lb = received(dir, engine, 'lb');
    const web = (JSON.parse(lb.text) as Json).vips.find((v: Json) => v.name === 'web');
    expect(web.backends.map((b: Json) => [b.name, b.ip, b.weight])).toEqual([
      ['web1', '10.9.0.11', 1],
      ['tok', hostile, 3],
    ]);
    expect(agentProblems(lb.text)).toEqual([`s/web/tok: ip: ${notIp(hostile)}`]);
    expect(lb.hash).toBe(sha256Hex(lb.text));
  });

  test("GIVEN a backend host's ssh.host holding a quote and more keys WHEN terraform applies THEN the host spec keeps its own user, and the agent refuses the host", async () => {
    const hostile = '10.9.1.13", "user": "attacker';
    await applyWith({ backend_ip: '10.9.0.12', weight: 3, vm_host: hostile });

    const vm = received(dir, engine, 'vm');
    expect((JSON.parse(vm.text) as Json).ssh).toEqual({ host: hostile, port: 22, user: 'root', hostKey: HOST_KEY });
    expect(agentProblems(vm.text)).toEqual([
      `s/vm: ssh.host: ${JSON.stringify(hostile)} is not a valid host; use an IPv4 or IPv6 address or a DNS name`,
      `s/vm: address: ${notIpv4(hostile)}`,
    ]);
  });
});

test('GIVEN a backend IP that Terraform knows only after apply WHEN terraform plans THEN the plan shows the spec to review, naming where the value comes from', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tula-tokens-plan-'));
  try {
    synth(dir, 'terraform_data', true);
    const tf = await terraformIn(dir, 'terraform_data');
    await tf(['init']);
    const plan = await tf(['plan']);
    const lb = plan.slice(plan.indexOf('# terraform_data.lb_host_'), plan.indexOf('# terraform_data.vm_host_'));
    expect(lb).toMatch(/\+ spec +?= \(known after apply\)/);
    expect(lb).toContain('+ ip     = "(known after apply: terraform_data.backend_ip.id)"');
    expect(lb).toContain('+ ip     = "10.9.0.11"');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GIVEN known values holding Terraform template syntax (a key path, a host key comment, a construct id) WHEN terraform applies THEN the agent gets them verbatim, as tula-dsr check reads them from the stack', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tula-literal-'));
  try {
    const app = new App({ outdir: path.join(dir, 'out'), context: { [ENGINE_CONTEXT_KEY]: 'terraform_data' } });
    const stack = new TerraformStack(app, 's');
    new LocalBackend(stack, { path: 'terraform.tfstate' });
    const hostKey = `ssh-ed25519 ${'A'.repeat(68)} ops \${var.weight} %{ if true }x%{ endif }`;
    const lb = new Balancer(stack, 'lb', { ssh: { host: '10.9.0.2', hostKey, privateKeyPath: '~/keys/${env}/%{id}' }, interface: 'eth0' });
    new DsrVip(stack, 'w${x}%{y}', { balancer: lb, name: 'web', ip: '10.9.0.100', port: 80 }).addBackend('web1', { ip: '10.9.0.11', mac: '52:54:00:00:09:11' });
    app.synth();
    const stackDir = path.join(dir, 'out', 'stacks', 's');
    const asCheckReadsIt = readStackHosts(stackDir).map((h) => h.specText);
    const file = path.join(stackDir, 'cdk.tf.json');
    const json = JSON.parse(readFileSync(file, 'utf8')) as Json;
    mkdirSync(path.join(dir, 'got'));
    const [key, resource] = Object.entries(json.resource.terraform_data as Record<string, Json>)[0];
    for (const p of resource.provisioner)
      p['local-exec'].command = p['local-exec'].when === 'destroy' ? ':' : `printf '%s' "$TULA_DSR_SPEC_GZ_0" > ${path.join(dir, 'got', key)}`;
    writeFileSync(file, JSON.stringify(json));
    const tf = await terraformIn(dir, 'terraform_data');
    await tf(['init']);
    await tf(['apply', '-auto-approve']);

    const lbReceived = received(dir, 'terraform_data', 'lb');
    const spec = parseHostSpec(lbReceived.text) as Json;
    expect([spec.ssh.hostKey, spec.ssh.privateKeyPath, spec.vips[0].path]).toEqual([hostKey, '~/keys/${env}/%{id}', 's/w${x}%{y}']);
    expect(lbReceived.hash).toBe(sha256Hex(lbReceived.text));
    expect(asCheckReadsIt).toEqual([lbReceived.text]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
