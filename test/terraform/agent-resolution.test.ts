/**
 * The provisioners run the tula-dsr of the project that synthesized the stack, never a `node_modules/tula-dsr`
 * planted between the stack folder and the project, or above the project. REAL terraform runs the synthesized
 * provisioner commands as they are; a planted package would record the passphrase it can read. The real agent,
 * when it runs, stops before connecting (no key, no ssh-agent): its message proves which agent ran.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, existsSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, LocalBackend, TerraformStack } from 'cdktf';
import { BackendHost, ENGINE_CONTEXT_KEY, PROJECT_ROOT_CONTEXT_KEY } from '../../constructs';
import { HOST_KEY } from '../support/common';
import { runTerraform } from '../../lab/terraform/env';
import { REPO, assertDistFresh } from '../agent/helpers';
import { stopAgentDaemons } from '../../lab/agent-daemons';

jest.setTimeout(90_000);

let dir: string;
beforeAll(() => {
  assertDistFresh();
  dir = mkdtempSync(path.join(os.tmpdir(), 'tula-resolve-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A package named tula-dsr whose agent writes the passphrase it can read to `marker`, and reports success. */
function plant(folder: string, marker: string): void {
  const pkg = path.join(folder, 'node_modules', 'tula-dsr');
  mkdirSync(pkg, { recursive: true });
  writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'tula-dsr', exports: { './agent': './agent.js' } }));
  writeFileSync(
    path.join(pkg, 'agent.js'),
    `exports.main = async () => { require('fs').writeFileSync(${JSON.stringify(marker)}, process.env.TULA_DSR_SSH_PASSPHRASE || ''); return 0; };\n`,
  );
}

/** A project folder with one backend host synthesized into project/cdktf.out; `ownInstall` links node_modules/tula-dsr to this checkout. */
function project(name: string, ownInstall: boolean): { root: string; stackDir: string } {
  const root = path.join(dir, name);
  mkdirSync(path.join(root, 'node_modules'), { recursive: true });
  if (ownInstall) symlinkSync(REPO, path.join(root, 'node_modules', 'tula-dsr'), 'dir');
  const app = new App({ outdir: path.join(root, 'cdktf.out'), context: { [ENGINE_CONTEXT_KEY]: 'terraform_data', [PROJECT_ROOT_CONTEXT_KEY]: root } });
  const stack = new TerraformStack(app, 's');
  new LocalBackend(stack, { path: 'terraform.tfstate' });
  new BackendHost(stack, 'web1', { ssh: { host: '10.9.0.11', hostKey: HOST_KEY } });
  app.synth();
  return { root, stackDir: path.join(root, 'cdktf.out', 'stacks', 's') };
}

/**
 * How the provisioner reaches the agent: perl's client through the daemon (where perl is at hand: the default), or
 * the node loader running the agent in its own process (TULA_DSR_DAEMON=0). Each must refuse the same agents.
 */
const PATHS = { 'the perl client and the daemon': true, 'the node loader in process': false };
let runtimes = 0;

async function apply(stackDir: string, daemon: boolean): Promise<{ code: number | null; output: string; doors: string[] }> {
  writeFileSync(path.join(dir, 'cli.tfrc'), '');
  const { SSH_AUTH_SOCK: _agent, ...inherited } = process.env;
  const runtime = path.join(dir, `rt${++runtimes}`);
  mkdirSync(runtime, { mode: 0o700 });
  const env = {
    ...inherited,
    TF_CLI_CONFIG_FILE: path.join(dir, 'cli.tfrc'),
    CHECKPOINT_DISABLE: '1',
    TF_IN_AUTOMATION: '1',
    TULA_DSR_RUNTIME_DIR: runtime,
    ...(daemon ? {} : { TULA_DSR_DAEMON: '0' }),
    TULA_DSR_SSH_PASSPHRASE: 'the passphrase',
  };
  try {
    const init = await runTerraform(['init', '-no-color', '-input=false'], { cwd: stackDir, env });
    if (init.code !== 0) throw new Error(init.stderr);
    const r = await runTerraform(['apply', '-auto-approve', '-no-color', '-input=false'], { cwd: stackDir, env, timeoutMs: 60_000 });
    return { code: r.code, output: r.stdout + r.stderr, doors: readdirSync(runtime).filter((n) => n.startsWith('agent-door-') && n.endsWith('.sock')) };
  } finally {
    await stopAgentDaemons(runtime);
  }
}

test.each(Object.entries(PATHS))(
  'GIVEN a tula-dsr planted in cdktf.out/node_modules, between the stack folder and the project WHEN terraform applies through %s THEN the project’s own agent runs and the planted one never loads',
  async (_how, daemon) => {
    const { root, stackDir } = project(`with-install-${runtimes}`, true);
    const marker = path.join(dir, `planted-ran-1-${runtimes}`);
    plant(path.join(root, 'cdktf.out'), marker);

    const r = await apply(stackDir, daemon);

    expect(existsSync(marker)).toBe(false);
    // the perl client ran the project's own agent (its door is named after that package), or nothing started a daemon
    expect(r.doors).toHaveLength(daemon ? 1 : 0);
    expect(r.code).toBe(1);
    expect(r.output).toContain(
      'failed: web1 root@10.9.0.11:22: no privateKeyPath and no ssh-agent (SSH_AUTH_SOCK is not set): set privateKeyPath or start ssh-agent',
    );
  },
);

test.each(Object.entries(PATHS))(
  'GIVEN a project without its own tula-dsr, and one planted above the project WHEN terraform applies through %s THEN the provisioner refuses it, says why, and nothing runs',
  async (_how, daemon) => {
    const { root, stackDir } = project(`without-install-${runtimes}`, false);
    const marker = path.join(dir, `planted-ran-2-${runtimes}`);
    plant(dir, marker);
    let r: { code: number | null; output: string; doors: string[] };
    try {
      r = await apply(stackDir, daemon);
    } finally {
      rmSync(path.join(dir, 'node_modules'), { recursive: true, force: true });
    }

    expect(existsSync(marker)).toBe(false);
    expect(r.code).toBe(1);
    expect(r.output).toContain(
      `tula-dsr: refusing to run ${path.join(dir, 'node_modules', 'tula-dsr', 'agent.js')}: provisioners run only the tula-dsr installed in ${root}, ` +
        'the project that synthesized this stack (cdktf context tula-dsr:project-root)',
    );
  },
);

test('GIVEN a project without any tula-dsr WHEN terraform applies THEN the provisioner says the agent is missing, exit 1', async () => {
  const { root, stackDir } = project('nothing', false);

  const r = await apply(stackDir, true);

  expect(r.code).toBe(1);
  expect(r.output).toContain(
    `tula-dsr: refusing to run an agent that is not installed: provisioners run only the tula-dsr installed in ${root}, the project that synthesized this stack (cdktf context tula-dsr:project-root)`,
  );
  expect(readFileSync(path.join(stackDir, 'cdk.tf.json'), 'utf8')).not.toContain(dir);
});
