/** Running things in the labs from tests: a root shell on a lab host, a command that must succeed, the example stack applied. */
import type { ExampleOptions } from '../../lab/example-stack';
import { createWorkspace, type RunResult, type Workspace } from '../../lab/l2/deploy';
import type { L2Lab } from '../../lab/l2/lab';
import type { LabHost } from '../../lab/topology';

/** Runs a sh script as root inside the host; throws with its stderr unless it exits 0. */
export async function sh(host: LabHost, script: string): Promise<string> {
  const r = await host.exec(script);
  if (r.code !== 0) throw new Error(`on ${host.name} (exit ${r.code}): ${script}\n${r.stderr.trim()}`);
  return r.stdout;
}

/** Throws with the last 40 lines of output unless the run (terraform, cdktf, the CLI) exited 0. */
export function expectOk(what: string, r: RunResult): void {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${`${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-40).join('\n')}`);
}

/** Synthesizes the example stack with these options and applies it with terraform; throws unless it succeeds. */
export async function applyExample(ws: Workspace, options: ExampleOptions): Promise<RunResult> {
  ws.synth(options);
  const r = await ws.terraform(['apply', '-auto-approve', '-input=false', '-no-color']);
  expectOk('terraform apply', r);
  return r;
}

/** A workspace (terraform_data) on the L2 lab with the example stack applied; removed again if that fails. */
export async function deployExample(l2: L2Lab, options: ExampleOptions): Promise<Workspace> {
  const ws = await createWorkspace({ inventory: l2.inventory, inventoryPath: l2.inventoryPath, engine: 'terraform_data' });
  try {
    ws.synth(options);
    expectOk('terraform init', await ws.terraform(['init', '-input=false', '-no-color']));
    await applyExample(ws, options);
    return ws;
  } catch (error) {
    ws.remove();
    throw error;
  }
}
