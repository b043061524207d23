/**
 * A deploy workspace for the example stack against a lab: a temp folder holding the synthesized stack, the
 * Terraform state and CLI config, and `node_modules/tula-dsr` -> this repository: the workspace is the project
 * (context tula-dsr:project-root), and the provisioner runs the agent it finds there, as in a user's project.
 *
 * Terraform installs hashicorp/null from the offline stand-in (lab/terraform/env.ts, lab support only); the
 * `terraform_data` engine needs no provider at all.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'cdktf';
import { ENGINE_CONTEXT_KEY, Engine, PROJECT_ROOT_CONTEXT_KEY } from '../../constructs';
import { ExampleOptions, ExampleStack } from '../example-stack';
import type { Inventory } from '../inventory';
import { RUNTIME_DIR_ENV } from '../../agent/daemon/paths';
import { signalAgentDaemons } from '../agent-daemons';
import { prepareTerraformEnv } from '../terraform/env';

export const STACK_NAME = 'dsr';

/** The repository root (the folder with package.json), from the sources or from dist/. */
export function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(path.join(dir, 'package.json')) || path.basename(dir) === 'dist') {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the repository root above ${__dirname}`);
    dir = up;
  }
  return dir;
}

/**
 * Throws unless dist/ holds a build at least as new as every source the deploy runs from it (the provisioners
 * and the CLIs run dist/, while the tests run from the sources): a stale build would test old code.
 */
export function assertFreshBuild(root = repoRoot()): void {
  const stale: string[] = [];
  const visit = (rel: string) => {
    const src = path.join(root, rel);
    const st = statSync(src);
    if (st.isDirectory()) {
      for (const e of readdirSync(src)) visit(path.join(rel, e));
      return;
    }
    if (!rel.endsWith('.ts') || rel.endsWith('.d.ts')) return;
    const out = path.join(root, 'dist', rel.replace(/\.ts$/, '.js'));
    if (!existsSync(out) || statSync(out).mtimeMs < st.mtimeMs) stale.push(rel);
  };
  for (const rel of ['main.ts', 'model', 'agent', 'constructs', 'runtime', 'lab/example-stack.ts', 'lab/inventory.ts']) visit(rel);
  // the runtime the agent installs is one bundled file, built after tsc
  const bundle = path.join(root, 'dist', 'runtime', 'tula-dsr-runtime.js');
  const newestRuntimeSource = Math.max(...['runtime', 'model'].flatMap((d) => sourceTimes(path.join(root, d))));
  if (!existsSync(bundle) || statSync(bundle).mtimeMs < newestRuntimeSource) stale.push('dist/runtime/tula-dsr-runtime.js (the bundle)');
  // and so is the agent CLI the `tula-dsr` bin runs
  const agentBundle = path.join(root, 'dist', 'agent', 'tula-dsr-agent.js');
  const newestAgentSource = Math.max(...['agent', 'model'].flatMap((d) => sourceTimes(path.join(root, d))));
  if (!existsSync(agentBundle) || statSync(agentBundle).mtimeMs < newestAgentSource) stale.push('dist/agent/tula-dsr-agent.js (the bundle)');
  if (stale.length) throw new Error(`dist/ is older than ${stale.slice(0, 5).join(', ')}${stale.length > 5 ? ', …' : ''}: run \`npm run build\` first`);
}

function sourceTimes(dir: string): number[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceTimes(full);
    return e.name.endsWith('.ts') ? [statSync(full).mtimeMs] : [];
  });
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs argv, optionally passing each output line to onLine as it arrives; kills it after timeoutMs. */
export function runStreaming(
  argv: readonly string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number; onLine?: (line: string, stream: 'stdout' | 'stderr') => void },
): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = { stdout: '', stderr: '' };
    const partial = { stdout: '', stderr: '' };
    const feed = (stream: 'stdout' | 'stderr') => (d: string) => {
      out[stream] += d;
      if (!opts.onLine) return;
      const lines = (partial[stream] + d).split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const l of lines) opts.onLine(l, stream);
    };
    child.stdout.setEncoding('utf8').on('data', feed('stdout'));
    child.stderr.setEncoding('utf8').on('data', feed('stderr'));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 180_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${argv[0]}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (opts.onLine) for (const s of ['stdout', 'stderr'] as const) if (partial[s]) opts.onLine(partial[s], s);
      resolve({ code: code ?? (signal ? 128 : -1), ...out, ms: Date.now() - started });
    });
  });
}

export interface WorkspaceOptions {
  readonly inventory: Inventory;
  readonly inventoryPath: string;
  readonly engine?: Engine;
  /** Where to create the workspace (default: the OS temp dir). */
  readonly parent?: string;
  /** More construct context for the in-process synth, e.g. `tula-dsr:triggers-inline-max-bytes` (default: none). */
  readonly context?: Readonly<Record<string, unknown>>;
}

/**
 * The agent daemon's folder for a workspace: Terraform's provisioners start a daemon there, and removing the
 * workspace stops it (instead of leaving it to exit when idle).
 */
export function agentRuntimeDir(workspace: string): string {
  const dir = path.join(workspace, 'agent-run');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export interface Workspace {
  readonly dir: string;
  readonly stackDir: string;
  readonly statePath: string;
  readonly engine: Engine;
  /** Environment for terraform, cdktf and the agent CLI (offline provider mirror, no telemetry). */
  readonly env: NodeJS.ProcessEnv;
  /** Synthesizes the example stack in-process into `<dir>/cdktf.out` (about 0.3 s). */
  synth(options?: ExampleOptions): void;
  terraform(args: readonly string[], onLine?: (line: string) => void): Promise<RunResult>;
  /** `cdktf deploy --auto-approve --skip-provider-lock` through the real cdktf CLI (synth via `node dist/main.js`). */
  cdktfDeploy(options?: ExampleOptions, onLine?: (line: string) => void): Promise<RunResult>;
  /** The agent CLI on the synthesized stack: `node dist/agent/cli.js <verb> <stackDir> [...extra]`. */
  agent(verb: 'apply' | 'check' | 'remove' | 'stats', extra?: readonly string[]): Promise<RunResult>;
  /** Removes the workspace folder. */
  remove(): void;
}

export async function createWorkspace(o: WorkspaceOptions): Promise<Workspace> {
  const root = repoRoot();
  const agentCli = path.join(root, 'dist', 'agent', 'cli.js');
  const mainJs = path.join(root, 'dist', 'main.js');
  assertFreshBuild(root);
  const engine = o.engine ?? 'null_resource';
  const dir = mkdtempSync(path.join(o.parent ?? os.tmpdir(), 'tula-dsr-deploy-'));
  try {
    // The provisioner runs the project's tula-dsr/agent (the workspace is the project): this checkout.
    mkdirSync(path.join(dir, 'node_modules'));
    symlinkSync(root, path.join(dir, 'node_modules', 'tula-dsr'), 'dir');
    const tf = await prepareTerraformEnv(dir);
    const statePath = path.join(dir, `terraform.${STACK_NAME}.tfstate`);
    const outdir = path.join(dir, 'cdktf.out');
    const stackDir = path.join(outdir, 'stacks', STACK_NAME);
    const env: NodeJS.ProcessEnv = {
      ...tf.env,
      [RUNTIME_DIR_ENV]: agentRuntimeDir(dir),
      TULA_DSR_INVENTORY: o.inventoryPath,
      TULA_DSR_ENGINE: engine,
      CHECKPOINT_DISABLE: '1',
    };
    writeFileSync(
      path.join(dir, 'cdktf.json'),
      JSON.stringify(
        {
          language: 'typescript',
          app: `${process.execPath} ${mainJs}`,
          output: 'cdktf.out',
          projectId: 'tula-dsr-lab',
          sendCrashReports: 'false',
          terraformProviders: [],
          terraformModules: [],
          context: {},
        },
        null,
        2,
      ),
    );
    const ws: Workspace = {
      dir,
      stackDir,
      statePath,
      engine,
      env,
      synth(options = {}) {
        // the workspace is the project: its node_modules/tula-dsr is what the provisioners may run
        const app = new App({ outdir, context: { ...o.context, [ENGINE_CONTEXT_KEY]: engine, [PROJECT_ROOT_CONTEXT_KEY]: dir } });
        // the stack keeps its state at ../../../terraform.dsr.tfstate from the stack folder: statePath
        new ExampleStack(app, STACK_NAME, o.inventory, options);
        app.synth();
      },
      terraform(args, onLine) {
        return runStreaming(['terraform', ...args], { cwd: stackDir, env, onLine: onLine && ((l) => onLine(l)) });
      },
      cdktfDeploy(options = {}, onLine) {
        const cdktf = path.join(root, 'node_modules', '.bin', 'cdktf');
        return runStreaming([cdktf, 'deploy', '--auto-approve', '--skip-provider-lock'], {
          cwd: dir,
          env: { ...env, TULA_DSR_EXAMPLE: JSON.stringify(options), CI: '1', FORCE_COLOR: '0' },
          onLine: onLine && ((l) => onLine(l)),
        });
      },
      agent(verb, extra = []) {
        return runStreaming([process.execPath, agentCli, verb, stackDir, ...extra], { cwd: dir, env, timeoutMs: 120_000 });
      },
      remove() {
        signalAgentDaemons(agentRuntimeDir(dir));
        rmSync(dir, { recursive: true, force: true });
      },
    };
    return ws;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Terraform's summary line, e.g. "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." */
export function applySummary(output: string): string | undefined {
  return /(Apply|Destroy) complete! Resources: [^\n]*/.exec(output)?.[0];
}

/**
 * Turns Terraform's apply/destroy output into per-host progress lines: the agent's own lines (printed by the
 * provisioner) and each resource's completion, with the resource address replaced by the host name.
 */
export function hostProgress(line: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  const clean = line.replace(/\x1b\[[0-9;]*m/g, '');
  const m = /^(?:\S+\s+)?(?:null_resource|terraform_data)\.([A-Za-z0-9]+)_host_[A-Za-z0-9]+(?:\s+\((local-exec)\))?:\s?(.*)$/.exec(clean);
  if (!m) return undefined;
  const [, host, exec, rest] = m;
  if (exec) {
    if (rest.startsWith('Executing:') || rest.trim() === '' || /^RECAP \*+$/.test(rest)) return undefined;
    const task = /^(ok|changed|failed|skipped): (\S+) (.*)$/.exec(rest);
    if (task && task[2] === host) return `  ${host.padEnd(8)} ${task[1].padEnd(8)} ${task[3]}`;
    const agent = /^tula-dsr: (\S+): (.*)$/.exec(rest);
    if (agent && agent[1] === host) return `  ${host.padEnd(8)} ${agent[2]}`;
    const recap = /^(\S+)\s+: (ok=.*)$/.exec(rest);
    if (recap && recap[1] === host) return `  ${host.padEnd(8)} recap    ${recap[2]}`;
    return `  ${host.padEnd(8)} ${rest}`;
  }
  if (/complete after|Destroying\.\.\.|Creating\.\.\./.test(rest)) return `  ${host.padEnd(8)} ${rest.replace(/ \[id=[^\]]*\]/, '')}`;
  return undefined;
}
