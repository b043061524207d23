/**
 * The real terraform binary on synthesized stacks, for the tests: an offline environment per engine, synth into a
 * temp tree, provisioner commands replaced by a logger, and terraform runs that fail the test on any warning.
 */
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { App, LocalBackend, TerraformStack } from 'cdktf';
import { ENGINE_CONTEXT_KEY, Engine } from '../../constructs';
import { prepareTerraformEnv, runTerraform, TerraformResult } from '../../lab/terraform/env';
import { COMPRESSED_SPEC_PREFIX } from '../../model';

export const TERRAFORM = '/usr/local/bin/terraform';
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Environment for one engine: the null stand-in's mirror config, or a plain CLI config of our own. */
export async function terraformEnv(dir: string, engine: Engine): Promise<NodeJS.ProcessEnv> {
  if (engine === 'null_resource') return { ...(await prepareTerraformEnv(dir)).env, TERRAFORM_BIN: TERRAFORM };
  // The machine exports TF_CLI_CONFIG_FILE pointing at a missing file; ours is absolute and exists.
  const cliConfig = path.join(dir, 'terraform-cli.tfrc');
  writeFileSync(cliConfig, 'disable_checkpoint = true\n');
  return { ...process.env, TF_CLI_CONFIG_FILE: cliConfig, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1', TF_INPUT: '0', TERRAFORM_BIN: TERRAFORM };
}

export async function tf(cwd: string, env: NodeJS.ProcessEnv, args: string[], okCodes = [0], timeoutMs = 30_000): Promise<TerraformResult> {
  const r = await runTerraform([...args, '-no-color'], { cwd, env, timeoutMs });
  if (!okCodes.includes(r.code ?? -1)) throw new Error(`terraform ${args.join(' ')} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  expect(r.stderr).not.toMatch(/Unable to open CLI configuration file|Warning/);
  return r;
}

/**
 * Synthesizes a stack into `outdir` and returns its folder. cdktf's default LocalBackend would put the state at
 * `${process.cwd()}/terraform.<stack>.tfstate` (the repository); a relative path keeps it in the temp tree. The
 * example stack sets its own (relative) backend.
 */
export function synth(outdir: string, engine: Engine, build: (app: App) => TerraformStack, context: Record<string, unknown> = {}): string {
  const app = new App({ outdir, context: { [ENGINE_CONTEXT_KEY]: engine, ...context } });
  const stack = build(app);
  if (!stack.node.tryFindChild('backend')) new LocalBackend(stack, { path: 'terraform.tfstate' });
  app.synth();
  return path.join(outdir, 'stacks', stack.node.id);
}

/**
 * Replaces every provisioner command by one that logs `<apply|remove> <sha256 of the spec it received>` to
 * events.log, keeping the environment expression: the test proves the spec reaches the command from `self`.
 */
export function neutralise(stackDir: string): void {
  const file = path.join(stackDir, 'cdk.tf.json');
  const json = JSON.parse(readFileSync(file, 'utf8'));
  const log = path.join(stackDir, 'events.log');
  const resources = Object.values((json.resource ?? {}) as Record<string, Record<string, Json>>).flatMap((byName) => Object.values(byName));
  // `removed` blocks (Balancer.retire, BackendHost.retire) carry a destroy provisioner too.
  for (const resource of [...resources, ...((json.removed ?? []) as Json[])]) {
    for (const p of resource.provisioner ?? []) {
      const verb = p['local-exec'].when === 'destroy' ? 'remove' : 'apply';
      const spec = 'i=0; while eval "test -n \\"\\${TULA_DSR_SPEC_GZ_$i:-}\\""; do eval "printf %s \\"\\$TULA_DSR_SPEC_GZ_$i\\""; i=$((i+1)); done';
      // a large host's spec is stored compressed (COMPRESSED_SPEC_PREFIX): the provisioner then gets it compressed twice
      const unpack = `t=$(mktemp); (${spec}) | base64 -d | gzip -dc > "$t"; if [ "$(head -c 4 "$t")" = ${COMPRESSED_SPEC_PREFIX} ]; then base64 -d "$t" | gzip -dc; else cat "$t"; fi; rm -f "$t"`;
      const shell = `echo "${verb} $( (${unpack}) | sha256sum | cut -c1-64)" >> '${log}'`;
      p['local-exec'].command = shell.replaceAll('${', () => '$${'); // a Terraform template: keep the shell's ${…}
    }
  }
  writeFileSync(file, JSON.stringify(json, null, 2));
}

export const events = async (stackDir: string) => (await fsp.readFile(path.join(stackDir, 'events.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
