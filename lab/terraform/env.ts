/**
 * Run the real Terraform CLI offline, for the labs (`npm run demo`) and the tests.
 *
 * `terraform init` cannot download hashicorp/null on the build machines, so this serves an offline
 * stand-in for hashicorp/null 3.2.4 (lab/terraform/null-provider, a Node implementation of the plugin
 * protocol) from a filesystem_mirror, and writes a CLI config file that points Terraform at it.
 * Other providers still install directly from their registries.
 *
 * LAB AND TEST SUPPORT ONLY: never shipped (the npm package holds dist/model, dist/constructs and
 * dist/agent only), and the stand-in is not the provider.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const NULL_PROVIDER_SOURCE = 'registry.terraform.io/hashicorp/null';
export const NULL_PROVIDER_VERSION = '3.2.4';

export interface TerraformEnv {
  /** process.env plus TF_CLI_CONFIG_FILE, CHECKPOINT_DISABLE, TF_DISABLE_PLUGIN_TLS, TF_IN_AUTOMATION, TF_INPUT. */
  env: NodeJS.ProcessEnv;
  /** Absolute path of the CLI config file written into workDir. */
  cliConfigPath: string;
  /** Absolute path of the (shared, cached) filesystem mirror. */
  mirrorDir: string;
  /** Absolute path of the provider RPC log (JSON lines), when `providerLog` was requested. */
  providerLogPath?: string;
}

export interface PrepareTerraformEnvOptions {
  /**
   * Make the stand-in provider append one JSON line per RPC to `<workDir>/null-provider-rpc.log`
   * (TULA_NULL_PROVIDER_LOG). Default false.
   */
  providerLog?: boolean;
}

/** Terraform's name for this platform, e.g. linux_amd64. */
function terraformPlatform(): string {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm' };
  return `${process.platform}_${arch[process.arch] ?? process.arch}`;
}

/**
 * The stand-in's entry point. From the sources (ts-jest) it sits next to this file; compiled, this file
 * runs from dist/lab/terraform, and tsc does not copy .js files, so it is found in the source tree.
 */
function providerMain(): string {
  const candidates = [
    path.join(__dirname, 'null-provider', 'main.js'),
    path.resolve(__dirname, '..', '..', '..', 'lab', 'terraform', 'null-provider', 'main.js'),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`null provider stand-in not found; looked at ${candidates.join(', ')}`);
  return found;
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** An HCL string literal (JSON escapes are valid HCL; template sequences are escaped). */
function hclString(s: string): string {
  return JSON.stringify(s).replace(/\$\{/g, '$${').replace(/%\{/g, '%%{');
}

/** Write a file atomically (temp file + rename), unless it already has this content. */
async function writeIfChanged(file: string, content: string, mode: number): Promise<void> {
  try {
    if ((await fsp.readFile(file, 'utf8')) === content) return;
  } catch {
    // missing: write it
  }
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fsp.writeFile(tmp, content, { mode });
  await fsp.chmod(tmp, mode);
  await fsp.rename(tmp, file);
}

interface MirrorLayout {
  mirrorDir: string;
  launcherPath: string;
  launcher: string;
}
let layout: MirrorLayout | undefined;

function mirrorLayout(): MirrorLayout {
  if (!layout) {
    const launcher = [
      '#!/bin/sh',
      '# Offline stand-in for hashicorp/null (lab and test support only); see lab/terraform/null-provider/main.js.',
      `exec ${shQuote(process.execPath)} ${shQuote(providerMain())} "$@"`,
      '',
    ].join('\n');
    const key = createHash('sha256').update(launcher).digest('hex').slice(0, 16);
    const mirrorDir = path.join(os.tmpdir(), 'tula-dsr-null-provider-mirror', key);
    const launcherPath = path.join(
      mirrorDir,
      NULL_PROVIDER_SOURCE,
      NULL_PROVIDER_VERSION,
      terraformPlatform(),
      `terraform-provider-null_v${NULL_PROVIDER_VERSION}`,
    );
    layout = { mirrorDir, launcherPath, launcher };
  }
  return layout;
}

/**
 * Make sure the unpacked filesystem mirror exists and return its absolute path:
 * <mirror>/registry.terraform.io/hashicorp/null/3.2.4/<os_arch>/terraform-provider-null_v3.2.4,
 * a launcher script that runs node on the stand-in (from the sources, so no build is needed).
 * The mirror lives in the OS temp dir, keyed by the launcher's content, and is written atomically
 * only when missing or different: parallel jest workers and repeated runs share it, and a call
 * costs one small file read.
 */
export async function ensureNullProviderMirror(): Promise<string> {
  const { mirrorDir, launcherPath, launcher } = mirrorLayout();
  await fsp.mkdir(path.dirname(launcherPath), { recursive: true });
  await writeIfChanged(launcherPath, launcher, 0o755);
  return mirrorDir;
}

/**
 * Prepare an environment in which the real `terraform` binary installs hashicorp/null offline.
 *
 * Writes `<workDir>/terraform-cli.tfrc` (workDir must exist and outlive the terraform calls; use
 * the caller's temp dir) and returns an env for child processes. Usage:
 *
 *   const { env } = await prepareTerraformEnv(tmp);
 *   await runTerraform(['init', '-input=false'], { cwd: stackDir, env });
 *   // cdktf-cli: `cdktf deploy --skip-provider-lock` with the same env
 */
export async function prepareTerraformEnv(workDir: string, options: PrepareTerraformEnvOptions = {}): Promise<TerraformEnv> {
  const mirrorDir = await ensureNullProviderMirror();
  const absWorkDir = path.resolve(workDir);
  const cliConfigPath = path.join(absWorkDir, 'terraform-cli.tfrc');
  const cliConfig = [
    '# Generated by lab/terraform/env.ts (lab and tests only).',
    'disable_checkpoint = true',
    '',
    'provider_installation {',
    '  filesystem_mirror {',
    `    path    = ${hclString(mirrorDir)}`,
    `    include = [${hclString(NULL_PROVIDER_SOURCE)}]`,
    '  }',
    '  direct {',
    `    exclude = [${hclString(NULL_PROVIDER_SOURCE)}]`,
    '  }',
    '}',
    '',
  ].join('\n');
  await fsp.writeFile(cliConfigPath, cliConfig);

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TF_CLI_CONFIG_FILE: cliConfigPath,
    CHECKPOINT_DISABLE: '1',
    TF_DISABLE_PLUGIN_TLS: '1',
    TF_IN_AUTOMATION: '1',
    TF_INPUT: '0',
  };
  let providerLogPath: string | undefined;
  if (options.providerLog) {
    providerLogPath = path.join(absWorkDir, 'null-provider-rpc.log');
    env.TULA_NULL_PROVIDER_LOG = providerLogPath;
  } else {
    delete env.TULA_NULL_PROVIDER_LOG;
  }
  return { env, cliConfigPath, mirrorDir, providerLogPath };
}

export interface TerraformResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall-clock milliseconds. */
  ms: number;
}

/**
 * Run `terraform <args>` (TERRAFORM_BIN or `terraform` on PATH) and collect its output.
 * Resolves whatever the exit code; check `code` yourself.
 */
export function runTerraform(args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<TerraformResult> {
  const bin = opts.env.TERRAFORM_BIN || process.env.TERRAFORM_BIN || 'terraform';
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}
