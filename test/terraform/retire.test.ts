/**
 * Deleting a host construct: Terraform drops a resource's destroy-time provisioner together with its block, so
 * a plain deletion would leave the host configured. `BackendHost.retire` / `Balancer.retire` emit a `removed` block
 * that keeps the provisioner. REAL terraform, both engines; the provisioner commands are replaced by a logger.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { App, LocalBackend, TerraformStack } from 'cdktf';
import { BackendHost, Balancer, DsrVip, ENGINE_CONTEXT_KEY, Engine } from '../../constructs';
import { agentCommand, projectFromStack } from '../../constructs/host-resource';
import { HOST_KEY } from '../support/common';
import { ENGINE_LIST } from '../support/stacks';
import { prepareTerraformEnv, runTerraform } from '../../lab/terraform/env';

jest.setTimeout(90_000);

function synth(dir: string, engine: Engine, retireWeb2: boolean): string {
  const app = new App({ outdir: path.join(dir, 'out'), context: { [ENGINE_CONTEXT_KEY]: engine } });
  const stack = new TerraformStack(app, 's');
  new LocalBackend(stack, { path: 'terraform.tfstate' });
  const lb = new Balancer(stack, 'lb', { ssh: { host: '10.9.0.2', hostKey: HOST_KEY }, interface: 'eth0' });
  const vip = new DsrVip(stack, 'web', { balancer: lb, ip: '10.9.0.100', port: 80 });
  vip.addBackend('web1', { host: new BackendHost(stack, 'web1', { ssh: { host: '10.9.0.11', hostKey: HOST_KEY } }) });
  if (retireWeb2) BackendHost.retire(stack, 'web2');
  else vip.addBackend('web2', { host: new BackendHost(stack, 'web2', { ssh: { host: '10.9.0.12', hostKey: HOST_KEY } }) });
  app.synth();
  const file = path.join(dir, 'out', 'stacks', 's', 'cdk.tf.json');
  // The agent would SSH to hosts that do not exist: log each call and the spec it received instead.
  const log = path.join(dir, 'calls.log');
  // the provisioner commands as they appear in the file (JSON-escaped)
  const inFile = (verb: 'apply' | 'remove') => JSON.stringify(agentCommand(verb, projectFromStack(stack))).slice(1, -1);
  const json = readFileSync(file, 'utf8')
    .split(inFile('apply'))
    .join(`echo apply >> ${log}`)
    .split(inFile('remove'))
    .join(`echo remove $TULA_DSR_SPEC_GZ_0 >> ${log}`);
  writeFileSync(file, json);
  return path.dirname(file);
}

describe.each(ENGINE_LIST)('engine %s', (engine) => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'tula-retire-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('GIVEN an applied stack WHEN a backend host construct is replaced by BackendHost.retire THEN apply destroys it and runs remove with its spec', async () => {
    const env =
      engine === 'null_resource'
        ? (await prepareTerraformEnv(dir)).env
        : { ...process.env, TF_CLI_CONFIG_FILE: path.join(dir, 'cli.tfrc'), CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1' };
    if (engine !== 'null_resource') writeFileSync(path.join(dir, 'cli.tfrc'), '');
    const cwd = synth(dir, engine, false);
    const tf = async (args: string[]) => {
      const r = await runTerraform([...args, '-no-color', '-input=false'], { cwd, env, timeoutMs: 60_000 });
      if (r.code !== 0) throw new Error(`terraform ${args.join(' ')}: ${r.stdout}\n${r.stderr}`);
      return r;
    };
    await tf(['init']);
    await tf(['apply', '-auto-approve']);
    expect(readFileSync(path.join(dir, 'calls.log'), 'utf8')).toBe('apply\napply\napply\n');

    synth(dir, engine, true);
    const plan = await tf(['plan']);
    expect(plan.stdout).toMatch(new RegExp(`# ${engine}\\.web2_host_[0-9A-F]+ will be destroyed`));
    const applied = await tf(['apply', '-auto-approve']);
    expect(applied.stdout).toMatch(/Resources: \d+ added, 0 changed, 2 destroyed\./);
    const calls = readFileSync(path.join(dir, 'calls.log'), 'utf8').trim().split('\n');
    const removes = calls.filter((c) => c.startsWith('remove '));
    expect(removes).toHaveLength(1);
    const spec = JSON.parse(gunzipSync(Buffer.from(removes[0].slice('remove '.length), 'base64')).toString('utf8'));
    expect(spec).toMatchObject({ kind: 'backend', name: 'web2', ssh: { host: '10.9.0.12' } });
  });
});
