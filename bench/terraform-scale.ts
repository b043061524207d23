/**
 * Terraform at scale: one balancer of N VIPs × 4 backends (terraform_data engine), applied once, then one weight
 * changed: `cdktf synth` (in process) + `terraform plan -out`, and `terraform apply` of that plan, as a pull-request
 * flow runs them; then the weight changed back by one `terraform apply -auto-approve`, as the issue's goal counts it.
 * The provisioners' commands are replaced with `true`, so the figures are Terraform's own work on the triggers (the
 * agent's run on the balancer is measured in the L2 section).
 *
 *   node dist/bench/terraform-scale.js [VIPS,...]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, LocalBackend, TerraformStack } from 'cdktf';
import { Balancer, BackendHost, DsrVip } from '../constructs';
import { formatIpv4 } from '../model';
import { synthesizedTriggers } from '../agent/spec-input';
import { timeMs } from './stats';

const KEY = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const BACKENDS = 4;

/** Synthesizes the stack into `outdir`; `changedWeight` is the weight of the first VIP's first backend. */
export function synthBalancerStack(outdir: string, vips: number, changedWeight: number): string {
  const app = new App({ outdir, context: { 'tula-dsr:engine': 'terraform_data' } });
  const stack = new TerraformStack(app, 'scale');
  new LocalBackend(stack, { path: 'terraform.tfstate' });
  const lb = new Balancer(stack, 'lb', { ssh: { host: '10.10.0.2', hostKey: KEY }, interface: 'eth0', subnet: '10.10.0.0/16' });
  const hosts = Array.from({ length: BACKENDS }, (_, i) => new BackendHost(stack, `be${i}`, { ssh: { host: `10.10.1.${i + 10}`, hostKey: KEY } }));
  for (let v = 0; v < vips; v++) {
    const vip = new DsrVip(stack, `vip${v}`, { balancer: lb, ip: formatIpv4(0x0a0a0000 + 512 + v), port: 80 });
    hosts.forEach((host, i) => vip.addBackend(`be${i}`, { host, weight: v === 0 && i === 0 ? changedWeight : 1 }));
  }
  app.synth();
  const stackDir = join(outdir, 'stacks', 'scale');
  const file = join(stackDir, 'cdk.tf.json');
  const json = JSON.parse(readFileSync(file, 'utf8')) as {
    resource: Record<string, Record<string, { provisioner: { 'local-exec': { command: string } }[] }>>;
  };
  for (const resources of Object.values(json.resource))
    for (const r of Object.values(resources)) for (const p of r.provisioner) p['local-exec'].command = 'true';
  writeFileSync(file, JSON.stringify(json));
  return stackDir;
}

/** The balancer resource's trigger map: how many keys, how many bytes. */
export function balancerTriggers(stackDir: string): { keys: number; bytes: number } {
  const json = JSON.parse(readFileSync(join(stackDir, 'cdk.tf.json'), 'utf8')) as {
    resource: { terraform_data: Record<string, { triggers_replace: unknown }> };
  };
  const [name, lb] = Object.entries(json.resource.terraform_data).find(([name]) => name.startsWith('lb')) ?? [];
  const triggers = lb ? (synthesizedTriggers(stackDir, lb.triggers_replace, `terraform_data.${name}`) ?? {}) : {};
  return { keys: Object.keys(triggers).length, bytes: Object.values(triggers).reduce((sum, v) => sum + Buffer.byteLength(v ?? ''), 0) };
}

function terraform(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ ms: number; out: string }> {
  const t0 = process.hrtime.bigint();
  return new Promise((done, fail) => {
    const child = spawn('terraform', [args[0], '-input=false', '-no-color', ...args.slice(1)], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => {
      if (code !== 0) fail(new Error(`terraform ${args[0]} failed:\n${out.slice(-3000)}`));
      else done({ ms: Number(process.hrtime.bigint() - t0) / 1e6, out });
    });
  });
}

export interface TerraformScale {
  readonly vips: number;
  readonly triggerKeys: number;
  readonly triggerMb: number;
  readonly synthMs: number;
  readonly planMs: number;
  readonly applyMs: number;
  /** One `terraform apply -auto-approve` of a one-weight change (it plans, then applies). */
  readonly directApplyMs: number;
  /** The state's size after the change. */
  readonly stateMb: number;
  /** The lines of `terraform plan`'s output for the change. */
  readonly planLines: number;
  /** The plan of the change names the changed VIP's pool, so that a reviewer sees the per-VIP change. */
  readonly planShowsChange: boolean;
}

export async function measureTerraformScale(vips: number, log: (line: string) => void = () => undefined): Promise<TerraformScale> {
  const work = mkdtempSync(join(tmpdir(), 'tula-tfscale-'));
  try {
    const cli = join(work, 'terraform.tfrc');
    writeFileSync(cli, '');
    const env = { ...process.env, TF_CLI_CONFIG_FILE: cli, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1' };
    const out = join(work, 'out');
    const stackDir = synthBalancerStack(out, vips, 1);
    await terraform(['init'], stackDir, env);
    const first = await terraform(['apply', '-auto-approve'], stackDir, env);
    log(`terraform scale ${vips} VIPs: first apply ${first.ms.toFixed(0)} ms`);
    const synth = timeMs(() => synthBalancerStack(out, vips, 3));
    const triggers = balancerTriggers(stackDir);
    const plan = await terraform(['plan', '-out=change.tfplan'], stackDir, env);
    const apply = await terraform(['apply', 'change.tfplan'], stackDir, env);
    const noop = await terraform(['plan', '-detailed-exitcode'], stackDir, env).then(
      () => true,
      () => false,
    );
    if (!noop) throw new Error('the plan after applying the change is not empty');
    const stateMb = statSync(join(stackDir, 'terraform.tfstate')).size / 2 ** 20;
    synthBalancerStack(out, vips, 1);
    const direct = await terraform(['apply', '-auto-approve'], stackDir, env);
    if (!/Resources: 1 added, 0 changed, 1 destroyed\./.test(direct.out))
      throw new Error(`the direct apply did not replace the balancer alone:\n${direct.out.slice(-2000)}`);
    log(
      `terraform scale ${vips} VIPs: synth ${synth.ms.toFixed(0)} ms, plan ${plan.ms.toFixed(0)} ms, apply ${apply.ms.toFixed(0)} ms, direct apply ${direct.ms.toFixed(0)} ms`,
    );
    return {
      vips,
      triggerKeys: triggers.keys,
      triggerMb: triggers.bytes / 2 ** 20,
      synthMs: synth.ms,
      planMs: plan.ms,
      applyMs: apply.ms,
      directApplyMs: direct.ms,
      stateMb,
      planLines: plan.out.split('\n').length,
      planShowsChange: /×3/.test(plan.out),
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const counts = (process.argv[2] ?? '1000').split(',').map(Number);
  (async () => {
    for (const n of counts) process.stdout.write(JSON.stringify(await measureTerraformScale(n, (l) => process.stderr.write(`${l}\n`))) + '\n');
  })().catch((e) => {
    process.stderr.write(`terraform-scale: ${(e as Error).message}\n`);
    process.exitCode = 1;
  });
}
