#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { SpecError } from '../model';
import { renderHostReport, renderRecap, hasFailure } from './report';
import { CliIo, processIo } from './io';
import { HostRunResult, RunMode, runHost } from './runner';
import { readSpecFromEnv, readStackHosts } from './spec-input';

export const EXIT = { ok: 0, failed: 1, drift: 2, usage: 64 } as const;

const USAGE = `usage: tula-dsr <apply|check|remove> [STACK_DIR | --spec FILE] [--diff] [--json] [--timeout SECONDS]

  apply    bring each host to its spec (ok / changed / failed per task, then a recap)
  check    change nothing; report what apply would change (drift detection)
  remove   undo what apply set up, if the host still runs this spec's generation

  STACK_DIR   a synthesized stack (cdktf.out/stacks/NAME): every host in it, in parallel
              (backend hosts before balancers for apply, the reverse for remove)
  --spec F    one host spec (JSON) from a file
  (neither)   the spec Terraform's provisioner passes in TULA_DSR_SPEC_GZ_0, _1, …

  --diff      show before/after text of files and rulesets
  --json      print machine-readable results on stdout
  --timeout   SSH connect timeout per attempt in seconds (default: $TULA_DSR_SSH_TIMEOUT, else 10)
  --limit L   only the hosts named in L (comma-separated host names, or 'balancer' / 'backend')

exit codes: 0 ok (check: in sync), 1 failure, 2 check found drift, 64 usage error
progress goes to stderr, results to stdout.`;

interface Args {
  mode: RunMode;
  stack?: string;
  specFile?: string;
  diff: boolean;
  json: boolean;
  timeoutMs?: number;
  limit?: string[];
}

/** Key and known_hosts paths: `~/` from the caller's HOME, relative paths from the caller's folder. */
export function userPathResolver(io: Pick<CliIo, 'env' | 'cwd'>): (path: string) => string {
  return (path) => (path.startsWith('~/') ? `${io.env.HOME ?? homedir()}${path.slice(1)}` : resolve(io.cwd, path));
}

function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv): Args | string {
  const [mode, ...rest] = argv;
  if (mode !== 'apply' && mode !== 'check' && mode !== 'remove') return mode ? `unknown command ${JSON.stringify(mode)}` : 'missing command';
  // Terraform's provisioners pass no options, so the environment can set the timeout for them.
  const envTimeout = env.TULA_DSR_SSH_TIMEOUT;
  const args: Args = { mode, diff: false, json: false, timeoutMs: envTimeout ? Number(envTimeout) * 1000 : undefined };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--diff') args.diff = true;
    else if (a === '--json') args.json = true;
    else if (a === '--spec') args.specFile = rest[++i];
    else if (a === '--timeout') args.timeoutMs = Number(rest[++i]) * 1000;
    else if (a === '--limit') args.limit = (rest[++i] ?? '').split(',').filter(Boolean);
    else if (!a.startsWith('-') && !args.stack) args.stack = a;
    else return `unknown option ${JSON.stringify(a)}`;
  }
  if (args.timeoutMs !== undefined && !(args.timeoutMs > 0)) return '--timeout needs a positive number of seconds';
  return args;
}

async function runMany(hosts: { specText: string; kind: 'balancer' | 'backend' }[], args: Args, io: CliIo): Promise<HostRunResult[]> {
  const options = {
    progress: (line: string) => io.stderr(`tula-dsr: ${line}\n`),
    connectOptions: { env: io.env, ...(args.timeoutMs ? { timeoutMs: args.timeoutMs } : {}) },
    resolvePath: userPathResolver(io),
    signal: io.signal,
  };
  const phases = args.mode === 'remove' ? ['balancer', 'backend'] : ['backend', 'balancer'];
  const results: HostRunResult[] = [];
  for (const kind of args.mode === 'check' ? [undefined] : phases) {
    const batch = hosts.filter((h) => kind === undefined || h.kind === kind);
    results.push(...(await Promise.all(batch.map((h) => runHost(h.specText, args.mode, options)))));
    if (results.some(hasFailure)) break;
  }
  return results;
}

/** Only orders the phases; the spec is validated properly when the host runs. */
function specKind(text: string): 'balancer' | 'backend' {
  try {
    return (JSON.parse(text) as { kind?: string }).kind === 'balancer' ? 'balancer' : 'backend';
  } catch {
    return 'backend';
  }
}

/**
 * The CLI, in process. Resolves to the exit code; with the default `io` it also sets `process.exitCode`.
 * Terraform's provisioners reach it through the agent daemon (see ./entry).
 */
export async function main(argv: readonly string[] = process.argv.slice(2), io?: CliIo): Promise<number> {
  const code = await run(argv, io ?? processIo());
  if (!io) process.exitCode = code;
  return code;
}

async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseArgs(argv, io.env);
  if (typeof parsed === 'string') {
    io.stderr(`tula-dsr: ${parsed}\n${USAGE}\n`);
    return EXIT.usage;
  }
  let hosts: { specText: string; kind: 'balancer' | 'backend' }[];
  try {
    if (parsed.stack) hosts = readStackHosts(resolve(io.cwd, parsed.stack)).filter((h) => !parsed.limit || parsed.limit.includes(h.kind) || parsed.limit.includes(h.name));
    else {
      const text = parsed.specFile ? readFileSync(resolve(io.cwd, parsed.specFile), 'utf8') : readSpecFromEnv(io.env);
      if (text === null) {
        io.stderr(`tula-dsr: no spec: give STACK_DIR or --spec FILE (Terraform passes TULA_DSR_SPEC_GZ_*)\n${USAGE}\n`);
        return EXIT.usage;
      }
      hosts = [{ specText: text, kind: specKind(text) }];
    }
  } catch (error) {
    io.stderr(`tula-dsr: ${error instanceof SpecError ? error.message : (error as Error).message}\n`);
    return EXIT.failed;
  }
  if (hosts.length === 0) {
    io.stderr(`tula-dsr: no host to ${parsed.mode}${parsed.limit ? ` matches --limit ${parsed.limit.join(',')}` : ' in this stack'}\n`);
    return EXIT.usage;
  }
  const results = await runMany(hosts, parsed, io);
  if (parsed.json) {
    io.stdout(JSON.stringify({ mode: parsed.mode, results }, null, 2) + '\n');
  } else {
    for (const r of results) io.stdout(renderHostReport(r, { diff: parsed.diff || undefined }));
    io.stdout(renderRecap(results));
  }
  if (results.some(hasFailure)) return EXIT.failed;
  if (parsed.mode === 'check' && results.some((r) => r.counts.changed > 0)) return EXIT.drift;
  return EXIT.ok;
}

if (require.main === module) void main();
