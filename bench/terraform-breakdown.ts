/**
 * Where T's time goes (tula-dsr through `terraform apply`, terraform_data engine) on the convergence lab:
 * variants of the synthesized stack whose provisioner command is replaced, measured side by side with C and D.
 *
 *   node dist/bench/terraform-breakdown.js [HOSTS] [ROUNDS] [VARIANT,...]
 *
 * Each variant gets its own copy of the stack folder (its own state); "cold" starts from a reset host and no state,
 * "no-op" re-runs it. Variants whose provisioner does not converge the hosts are not verified.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { resetHosts, runMethod, setupConvergence, verifyHosts, ConvergenceSetup } from './converge';
import { stat, Stat } from './stats';

const REPO = resolve(__dirname, '..', '..');

export interface Variant {
  readonly name: string;
  readonly description: string;
  /** Replaces the apply provisioner's command (undefined: keep it). */
  readonly command?: string;
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** The provisioner converges the hosts (verify afterwards). */
  readonly converges: boolean;
}

export const VARIANTS: Record<string, Variant> = {
  T: {
    name: 'T',
    description:
      "as shipped: the synthesized provisioner (the project's perl client, node's where perl is not at hand) through the agent daemon, -parallelism=hosts",
    converges: true,
  },
  'T-inproc': {
    name: 'T-inproc',
    description: 'the same with the daemon off (TULA_DSR_DAEMON=0): the whole agent loads in each provisioner',
    env: { TULA_DSR_DAEMON: '0' },
    converges: true,
  },
  'T-p10': { name: 'T-p10', description: 'as shipped, -parallelism=10', args: ['-parallelism=10'], converges: true },
  'T-p40': { name: 'T-p40', description: 'as shipped, -parallelism=40', args: ['-parallelism=40'], converges: true },
  'T-norefresh': { name: 'T-norefresh', description: 'as shipped, -refresh=false', args: ['-refresh=false'], converges: true },
  true: { name: 'true', description: 'provisioner `true` (terraform alone)', command: 'true', converges: false },
  node: { name: 'node', description: 'provisioner `node -e 0` (bare node start-up)', command: "node -e '0'", converges: false },
  // what the provisioners' perl client (agent/daemon/client.pl) starts from: perl and the modules it loads
  perl: {
    name: 'perl',
    description: 'provisioner `perl -MSocket -MFcntl -MCwd -e 0` (bare perl start-up with the perl client’s modules)',
    command: "perl -MSocket -MFcntl -MCwd -e '0'",
    converges: false,
  },
  require: {
    name: 'require',
    description: 'provisioner `node -e require("tula-dsr/agent")` (start-up + the small provisioner entry)',
    command: `node -e 'require("tula-dsr/agent")'`,
    converges: false,
  },
  'require-full': {
    name: 'require-full',
    description: 'provisioner `node -e require(".../dist/agent/cli.js")` (start-up + the whole agent: zod, ssh2, the model)',
    command: `node -e 'require(${JSON.stringify(join(REPO, 'dist', 'agent', 'cli.js'))})'`,
    converges: false,
  },
};

/** A named variant, or `NAME=COMMAND` for an ad-hoc provisioner command (experiments). */
function variantOf(spec: string): Variant {
  const eq = spec.indexOf('=');
  if (eq > 0) return { name: spec.slice(0, eq), description: `provisioner \`${spec.slice(eq + 1)}\``, command: spec.slice(eq + 1), converges: true };
  const v = VARIANTS[spec];
  if (!v) throw new Error(`unknown variant ${spec}: ${Object.keys(VARIANTS).join(', ')}, C, D, or NAME=COMMAND`);
  return v;
}

function run(argv: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; ms: number }> {
  const t0 = process.hrtime.bigint();
  return new Promise((done) => {
    const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => done({ code: code ?? 1, out, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
  });
}

/** A copy of the stack folder with the apply provisioner's command replaced. */
function variantDir(s: ConvergenceSetup, v: Variant): string {
  const dir = join(s.work, 'variants', v.name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(s.stackDir, dir, { recursive: true, filter: (src) => !/terraform\.tfstate/.test(src) });
  if (v.command !== undefined) {
    const file = join(dir, 'cdk.tf.json');
    const json = JSON.parse(readFileSync(file, 'utf8')) as {
      resource: Record<string, Record<string, { provisioner: { 'local-exec': { command: string; when?: string } }[] }>>;
    };
    for (const resources of Object.values(json.resource)) {
      for (const r of Object.values(resources)) for (const p of r.provisioner) if (!p['local-exec'].when) p['local-exec'].command = v.command;
    }
    writeFileSync(file, JSON.stringify(json, null, 2));
  }
  return dir;
}

async function terraformApply(s: ConvergenceSetup, dir: string, v: Variant): Promise<number> {
  const targets = s.backendResources.flatMap((a) => ['-target', a]);
  // every host at once, as the convergence bench's T runs it (Terraform's default is 10)
  const args = v.args ?? [`-parallelism=${s.hosts.length}`];
  const r = await run(['terraform', 'apply', '-auto-approve', '-input=false', '-no-color', ...args, ...targets], dir, { ...s.tfEnv, ...v.env });
  if (r.code !== 0) throw new Error(`terraform apply (${v.name}) failed:\n${r.out.slice(-3000)}`);
  return r.ms;
}

export async function measureBreakdown(hosts: number, rounds: number, names: readonly string[]): Promise<Record<string, { cold: Stat; noop: Stat }>> {
  const s = await setupConvergence(hosts, join(REPO, '.cache', 'bench'));
  const cold: Record<string, number[]> = {};
  const noop: Record<string, number[]> = {};
  try {
    const dirs: Record<string, string> = {};
    for (const n of names) {
      if (n === 'C' || n === 'D') continue;
      const v = variantOf(n);
      dirs[n] = variantDir(s, v);
      const init = await run(['terraform', 'init', '-input=false', '-no-color'], dirs[n], s.tfEnv);
      if (init.code !== 0) throw new Error(`terraform init failed: ${init.out}`);
    }
    for (let round = 0; round < rounds; round++) {
      for (const n of names) {
        await resetHosts(s);
        let c: number;
        let o: number;
        if (n === 'C' || n === 'D') {
          c = (await runMethod(s, n)).ms;
          o = (await runMethod(s, n)).ms;
        } else {
          const v = variantOf(n);
          rmSync(join(dirs[n], 'terraform.tfstate'), { force: true });
          c = await terraformApply(s, dirs[n], v);
          if (v.converges) await verifyHosts(s);
          o = await terraformApply(s, dirs[n], v);
        }
        (cold[n] ??= []).push(c);
        (noop[n] ??= []).push(o);
        process.stderr.write(`round ${round + 1} ${n}: cold ${c.toFixed(0)} ms, no-op ${o.toFixed(0)} ms\n`);
      }
    }
  } finally {
    await s.teardown();
  }
  return Object.fromEntries(names.map((n) => [n, { cold: stat(cold[n]), noop: stat(noop[n]) }]));
}

if (require.main === module) {
  const hosts = Number(process.argv[2] ?? 20);
  const rounds = Number(process.argv[3] ?? 3);
  const names = (process.argv[4] ?? 'C,D,T,true,node,require').split(process.argv[4]?.includes(';') ? ';' : ',');
  measureBreakdown(hosts, rounds, names).then(
    (r) => {
      for (const [n, x] of Object.entries(r)) {
        const d = n === 'C' ? 'plain ssh per host' : n === 'D' ? 'tula-dsr apply STACK_DIR' : variantOf(n).description;
        process.stdout.write(
          `${n.split('=')[0].padEnd(12)} cold ${x.cold.median.toFixed(0).padStart(5)} ms (${x.cold.min.toFixed(0)}–${x.cold.max.toFixed(0)})  no-op ${x.noop.median.toFixed(0).padStart(5)} ms (${x.noop.min.toFixed(0)}–${x.noop.max.toFixed(0)})  ${d}\n`,
        );
      }
    },
    (e) => {
      process.stderr.write(`terraform-breakdown: ${(e as Error).stack}\n`);
      process.exitCode = 1;
    },
  );
}
