/**
 * The REAL terraform binary on the synthesized example stack, with both engines: init, validate and plan show the
 * readable ruleset; after an apply (provisioner commands replaced by a logger, see `neutralise`), a weight change
 * plans as a line diff of the ruleset and a replacement of the balancer only. The null_resource engine uses the
 * offline stand-in for hashicorp/null (lab/terraform/env.ts).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TerraformResource, TerraformStack } from 'cdktf';
import { Balancer, DsrVip } from '../../constructs';
import { ExampleStack } from '../../lab/example-stack';
import { DEFAULT_INVENTORY } from '../../lab/inventory';
import { HOST_KEY } from '../support/common';
import { ENGINE_LIST } from '../support/stacks';
import { poolSectionKeyOfClassid } from '../support/review';
import { events, neutralise, synth, terraformEnv, tf } from '../support/terraform';

jest.setTimeout(60_000);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function stateTriggers(cwd: string, env: NodeJS.ProcessEnv): Promise<Record<string, Json>> {
  const state = JSON.parse((await tf(cwd, env, ['show', '-json'])).stdout);
  return Object.fromEntries((state.values?.root_module?.resources ?? []).map((r: Json) => [r.address, r.values.triggers ?? r.values.triggers_replace]));
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
/** A plan line inside a heredoc: any indentation, then the text (tabs kept). */
const planLine = (sign: '' | '+' | '-', text: string) => new RegExp(`^ *${sign ? `\\${sign}` : ''} *${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm');

describe.each(ENGINE_LIST)('engine %s', (engine) => {
  const type = engine;
  const triggers = engine === 'null_resource' ? 'triggers' : 'triggers_replace';
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let stackDir: string;
  let WEB_POOL: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-tf-'));
    env = await terraformEnv(dir, engine);
    stackDir = synth(path.join(dir, 'out'), engine, (app) => new ExampleStack(app, 'dsr', DEFAULT_INVENTORY));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('GIVEN the synthesized example stack WHEN terraform init, validate and plan run THEN the plan shows the ruleset lines for review', async () => {
    const init = await tf(stackDir, env, ['init', '-input=false']);
    expect(init.stdout).toMatch(/Terraform has been successfully initialized!/);
    if (engine === 'null_resource') expect(init.stdout).toMatch(/Installing hashicorp\/null v3\.2\.4/);
    expect((await tf(stackDir, env, ['validate'])).stdout).toMatch(/Success! The configuration is valid\./);

    const plan = (await tf(stackDir, env, ['plan', '-input=false'])).stdout;
    expect(plan).toMatch(new RegExp(`# ${type}\\.lb1_host_[0-9A-F]{8} will be created`));
    expect(plan).toMatch(/\+ "?ruleset"? += <<-EOT$/m);
    expect(plan).toMatch(planLine('', 'table netdev tula_dsr {'));
    expect(plan).toMatch(planLine('', '\t\ttype filter hook ingress device "eth0" priority -300; policy accept;'));
    // Each VIP's map elements are their own trigger entry, one element per line.
    expect(plan).toMatch(/^ *\+ "vip:web" += <<-EOT$/m);
    // the web VIP points at its slot pool (a pool of its own here), whose id the later steps follow
    WEB_POOL = /^ *\t10\.213\.1\.100 \. tcp \. 80 : ([0-9a-f]+:[0-9a-f]+)$/m.exec(plan)?.[1] ?? 'none';
    expect(plan).toMatch(new RegExp(`^ *\\+ "${poolSectionKeyOfClassid(WEB_POOL)}" += <<-EOT$`, 'm'));
    expect(plan).toMatch(planLine('', `\t${WEB_POOL} . 5 : $mac_0ad5010d`));
    expect(plan).toMatch(
      planLine('', '\t\tmeta protocol ip meta priority set ip daddr . meta l4proto . th dport map @vip_pool_port meta priority vmap @pool_chain'),
    );
    expect(plan).toMatch(/\+ "?sysctl_file"? += <<-EOT$/m);
    expect(plan).toMatch(planLine('', 'net.ipv4.conf.all.arp_ignore = 1'));
    expect(plan).toMatch(/Plan: 4 to add, 0 to change, 0 to destroy\./);
  });

  test('GIVEN an applied stack WHEN a weight changes THEN the plan shows a line diff of the changed ruleset elements and replaces only the balancer', async () => {
    neutralise(stackDir);
    await tf(stackDir, env, ['apply', '-input=false', '-auto-approve']);
    const applied = await stateTriggers(stackDir, env);
    // Each create provisioner received, from self, exactly the spec whose sha256 is the hash trigger.
    expect((await events(stackDir)).sort()).toEqual(
      Object.values(applied)
        .map((t) => `apply ${t.hash}`)
        .sort(),
    );
    for (const t of Object.values(applied)) expect(t.hash).toBe(sha256(t.spec));

    synth(path.join(dir, 'out'), engine, (app) => new ExampleStack(app, 'dsr', DEFAULT_INVENTORY, { weights: [1, 2, 4] }));
    neutralise(stackDir);
    const plan = (await tf(stackDir, env, ['plan', '-input=false', '-detailed-exitcode', '-out=weights.tfplan'], [2])).stdout;
    expect(plan).toMatch(new RegExp(`# ${type}\\.lb1_host_[0-9A-F]{8} must be replaced`));
    expect(plan).toMatch(new RegExp(`\\+/- resource "${type}" "lb1_host_[0-9A-F]{8}"`));
    // null marks the attribute; for terraform_data, Terraform replaces on any triggers_replace change without a mark.
    expect(plan).toMatch(new RegExp(`~ ${triggers} = \\{${engine === 'null_resource' ? ' # forces replacement' : '$'}`, 'm'));
    expect(plan).toMatch(/~ "?ruleset"? += <<-EOT$/m);
    // 1:2:3 → 1:2:4: the web VIP's slot table grows from 6 to 7 slots and its chain from rr6 to rr7.
    // the web VIP's slot pool keeps its id: only the slots that moved, and its dispatch, show as changed
    expect(plan).toMatch(new RegExp(`~ "${poolSectionKeyOfClassid(WEB_POOL)}" += <<-EOT$`, 'm'));
    expect(plan).toMatch(planLine('+', `\t${WEB_POOL} . 6 : $mac_0ad5010d`));
    expect(plan).toMatch(planLine('-', `\t${WEB_POOL} . 5 : $mac_0ad5010d`));
    expect(plan).toMatch(planLine('-', `\t${WEB_POOL} : goto l2_tcp_port_rr6_t300`));
    expect(plan).toMatch(planLine('+', `\t${WEB_POOL} : goto l2_tcp_port_rr7_t300`));
    expect(plan).not.toMatch(/"?vip:web"? += /);
    // Only the web VIP's lines change: the dns and all-ports VIPs' entries are hidden as unchanged.
    expect(plan).not.toMatch(/^ *[-+] .*10\.213\.1\.10[12] \./m);
    expect(plan).not.toMatch(/"?(vip|pool):(dns|any)"? += /);
    expect(plan).not.toMatch(/web[123]_host_[0-9A-F]{8} (must be replaced|will be)/);
    expect(plan).toMatch(/Plan: 1 to add, 0 to change, 1 to destroy\./);

    await tf(stackDir, env, ['apply', '-input=false', 'weights.tfplan']);
    const replaced = await stateTriggers(stackDir, env);
    const lb = Object.keys(replaced).find((a) => a.includes('lb1_host_'))!;
    expect(replaced[lb].hash).not.toBe(applied[lb].hash);
    // Terraform 1.11 runs the new instance's create provisioner, and destroys the deposed old instance WITHOUT its
    // destroy provisioner (see test/lab/null-provider.test.ts): a replacement never runs `remove`.
    expect((await events(stackDir)).slice(Object.keys(applied).length)).toEqual([`apply ${replaced[lb].hash}`]);
    for (const [address, t] of Object.entries(replaced)) if (address !== lb) expect(t).toEqual(applied[address]);

    // A real delete runs `remove` for every host, fed from self only (the balancer first: it depends on the hosts).
    const before = (await events(stackDir)).length;
    await tf(stackDir, env, ['destroy', '-input=false', '-auto-approve']);
    const removed = (await events(stackDir)).slice(before);
    expect(removed[0]).toBe(`remove ${replaced[lb].hash}`);
    expect([...removed].sort()).toEqual(
      Object.values(replaced)
        .map((t) => `remove ${t.hash}`)
        .sort(),
    );
  });

  test('GIVEN a backend IP from another resource WHEN planned and applied THEN the plan defers it and the hash trigger is the sha256 of the resolved spec', async () => {
    const tokenDir = synth(path.join(dir, 'token-out'), engine, (app) => {
      const stack = new TerraformStack(app, 'tok');
      const source = new TerraformResource(stack, 'backend_ip', { terraformResourceType: 'terraform_data' });
      source.addOverride('input', '10.0.1.77');
      const lb = new Balancer(stack, 'lb1', { ssh: { host: '10.0.1.2', hostKey: HOST_KEY }, interface: 'eth0' });
      new DsrVip(stack, 'web', { balancer: lb, ip: '10.0.1.100', port: 80 }).addBackend('web1', { ip: source.getStringAttribute('output') });
      return stack;
    });
    neutralise(tokenDir);
    await tf(tokenDir, env, ['init', '-input=false']);
    const plan = (await tf(tokenDir, env, ['plan', '-input=false'])).stdout;
    expect(plan).toMatch(/\+ "?spec"? += \(known after apply\)/);
    expect(plan).toMatch(/\+ "?hash"? += \(known after apply\)/);
    expect(plan).toMatch(planLine('', '(rendered by the agent at apply time: the spec holds values Terraform knows only after apply)'));
    await tf(tokenDir, env, ['apply', '-input=false', '-auto-approve']);
    const lb = Object.entries(await stateTriggers(tokenDir, env)).find(([a]) => a.includes('lb1_host_'))![1];
    expect(JSON.parse(lb.spec).vips[0].backends[0].ip).toBe('10.0.1.77');
    expect(lb.hash).toBe(sha256(lb.spec));
    expect(await events(tokenDir)).toEqual([`apply ${lb.hash}`]);
  });
});
