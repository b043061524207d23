#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { SPEC_ENV_PREFIX, SpecError, pushAll } from '../model';
import { renderHostReport, renderRecap, hasFailure } from './report';
import { CliIo, processIo } from './io';
import { HostRunResult, runHost } from './runner';
import { readSpecFromEnv, readStackHosts } from './spec-input';
import { EXIT, HostCommandArgs, USAGE, parseCliArgs } from './cli-args';
import { runReview } from './review-command';
import { runStats } from './stats/command';
import { cacheRoot } from './facts/file-cache';

export { EXIT };

/** Key and known_hosts paths: `~/` from the caller's HOME, relative paths from the caller's folder. */
export function userPathResolver(io: Pick<CliIo, 'env' | 'cwd'>): (path: string) => string {
  return (path) => (path.startsWith('~/') ? `${io.env.HOME ?? homedir()}${path.slice(1)}` : resolve(io.cwd, path));
}

async function runMany(hosts: { specText: string; kind: 'balancer' | 'backend' }[], args: HostCommandArgs, io: CliIo): Promise<HostRunResult[]> {
  const options = {
    progress: (line: string) => io.stderr(`tula-dsr: ${line}\n`),
    connectOptions: {
      env: io.env,
      ...(args.timeoutMs ? { timeoutMs: args.timeoutMs } : {}),
      ...(args.runTimeoutMs ? { runTimeoutMs: args.runTimeoutMs } : {}),
    },
    resolvePath: userPathResolver(io),
    signal: io.signal,
    cacheRoot: cacheRoot(io.env),
  };
  const phases = args.mode === 'remove' ? ['balancer', 'backend'] : ['backend', 'balancer'];
  const results: HostRunResult[] = [];
  for (const kind of args.mode === 'check' ? [undefined] : phases) {
    const batch = hosts.filter((h) => kind === undefined || h.kind === kind);
    pushAll(results, await Promise.all(batch.map((h) => runHost(h.specText, args.mode, options))));
    if (results.some(hasFailure)) break;
  }
  return results;
}

/**
 * Only orders the phases; the spec is validated properly when the host runs. Not parsed here (a 10,000-VIP spec is
 * 4 MB: 0.08 s and its garbage): a quote inside a JSON string is escaped, so this is a `kind` key, and no other
 * object's `kind` (a health check's) can be "balancer".
 */
function specKind(text: string): 'balancer' | 'backend' {
  return /"kind"\s*:\s*"balancer"/.test(text) ? 'balancer' : 'backend';
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
  const parsed = parseCliArgs(argv, io.env);
  if (typeof parsed === 'string') {
    io.stderr(`tula-dsr: ${parsed}\n${USAGE}\n`);
    return EXIT.usage;
  }
  if (parsed.command === 'review') return runReview(parsed, io);
  if (parsed.command === 'stats') return runStats(parsed, io, userPathResolver(io));
  let hosts: { specText: string; kind: 'balancer' | 'backend' }[];
  try {
    if (parsed.stack)
      hosts = readStackHosts(resolve(io.cwd, parsed.stack)).filter((h) => !parsed.limit || parsed.limit.includes(h.kind) || parsed.limit.includes(h.name));
    else {
      const text = parsed.specFile ? readFileSync(resolve(io.cwd, parsed.specFile), 'utf8') : readSpecFromEnv(io.env);
      if (text === null) {
        io.stderr(`tula-dsr: no spec: give STACK_DIR or --spec FILE (Terraform passes ${SPEC_ENV_PREFIX}*)\n${USAGE}\n`);
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
