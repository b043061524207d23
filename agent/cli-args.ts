import { parseArgs } from 'node:util';
import { SPEC_ENV_PREFIX } from '../model/agent-contract';
import type { RunMode } from './runner';

/**
 * The command line, defined once: the parser and the usage text both come from these tables. Node's own
 * `util.parseArgs` does the parsing, so the provisioner's entry loads nothing extra.
 */
export const COMMANDS: Readonly<Record<RunMode | 'stats', string>> = {
  apply: 'bring each host to its spec (ok / changed / failed per task, then a recap)',
  check: 'change nothing; report what apply would change (drift detection)',
  remove: "undo what apply set up, if the host still runs this spec's generation",
  stats: 'live figures of each balancer: packets, bytes, flows, active connections, health (one SSH round trip each)',
};

interface OptionDef {
  readonly type: 'boolean' | 'string';
  /** Placeholder for the value in the usage text. */
  readonly value?: string;
  readonly help: string;
}

export const OPTIONS = {
  spec: { type: 'string', value: 'FILE', help: 'one host spec (JSON) from a file' },
  diff: { type: 'boolean', help: 'show before/after text of files and rulesets' },
  json: { type: 'boolean', help: 'print machine-readable results on stdout' },
  timeout: { type: 'string', value: 'SECONDS', help: 'SSH connect timeout per attempt (default: $TULA_DSR_SSH_TIMEOUT, else 10)' },
  limit: { type: 'string', value: 'L', help: "only the hosts named in L (comma-separated host names, or 'balancer' / 'backend')" },
} as const satisfies Record<string, OptionDef>;

/** stats takes the host options that make sense for reading a balancer, and --watch. */
export const STATS_OPTIONS = {
  spec: { type: 'string', value: 'FILE', help: 'one balancer spec (JSON) from a file' },
  json: { type: 'boolean', help: 'print the figures as JSON (with --watch, one document per line)' },
  watch: { type: 'string', value: '[SECONDS]', help: 'keep the connections open and sample every SECONDS (default 2), with rates, until Ctrl-C' },
  timeout: OPTIONS.timeout,
  limit: { type: 'string', value: 'L', help: 'only the balancers named in L (comma-separated)' },
} as const satisfies Record<string, OptionDef>;

export const DEFAULT_WATCH_SEC = 2;

export const EXIT = { ok: 0, failed: 1, drift: 2, usage: 64 } as const;

function renderUsage(): string {
  const commands = Object.keys(COMMANDS).join('|');
  const width = Math.max(
    ...[...Object.entries(OPTIONS), ...Object.entries(STATS_OPTIONS)].map(([name, o]) => `--${name}${'value' in o ? ` ${o.value}` : ''}`.length),
  );
  const option = ([name, o]: [string, OptionDef]) => `  ${`--${name}${o.value ? ` ${o.value}` : ''}`.padEnd(width)}  ${o.help}`;
  return [
    `usage: tula-dsr <${commands}> [STACK_DIR | --spec FILE] [options]`,
    '',
    ...Object.entries(COMMANDS).map(([name, help]) => `  ${name.padEnd(width)}  ${help}`),
    '',
    `  ${'STACK_DIR'.padEnd(width)}  a synthesized stack (cdktf.out/stacks/NAME): every host in it, in parallel`,
    `  ${''.padEnd(width)}  (backend hosts before balancers for apply, the reverse for remove)`,
    `  ${'(neither)'.padEnd(width)}  the spec Terraform's provisioner passes in ${SPEC_ENV_PREFIX}0, _1, …`,
    '',
    ...Object.entries(OPTIONS).map(option),
    '',
    'stats STACK_DIR | --spec FILE [options]: the balancers only; their counters, read with one nft listing each',
    ...Object.entries(STATS_OPTIONS).map(option),
    '',
    `exit codes: ${EXIT.ok} ok (check: in sync), ${EXIT.failed} failure, ${EXIT.drift} check found drift, ${EXIT.usage} usage error`,
    'progress goes to stderr, results to stdout.',
  ].join('\n');
}

export const USAGE = renderUsage();

export interface CliArgs {
  readonly mode: RunMode;
  readonly stack?: string;
  readonly specFile?: string;
  readonly diff: boolean;
  readonly json: boolean;
  readonly timeoutMs?: number;
  readonly limit?: readonly string[];
}

/** stats: which balancers, how to print, and how often to sample (once without --watch). */
export interface StatsArgs {
  readonly command: 'stats';
  readonly stack?: string;
  readonly specFile?: string;
  readonly json: boolean;
  readonly watchSec?: number;
  readonly timeoutMs?: number;
  readonly limit?: readonly string[];
}

/** `--watch` takes an optional number: a following word that is a number is its value, as `--watch=N` always is. */
function statsArgs(rest: readonly string[], env: NodeJS.ProcessEnv): StatsArgs | string {
  const args: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] !== '--watch') args.push(rest[i]);
    else if (/^\d+(\.\d+)?$/.test(rest[i + 1] ?? '')) args.push(`--watch=${rest[++i]}`);
    else args.push(`--watch=${DEFAULT_WATCH_SEC}`);
  }
  let parsed: ReturnType<typeof parseArgs<{ options: typeof STATS_OPTIONS; allowPositionals: true; strict: true; args: string[] }>>;
  try {
    parsed = parseArgs({ args, options: STATS_OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    return (error as Error).message.replace(/\. To specify a positional argument.*$/s, '');
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) return `one STACK_DIR at most (got ${positionals.map((p) => JSON.stringify(p)).join(', ')})`;
  const timeout = values.timeout ?? env.TULA_DSR_SSH_TIMEOUT;
  const timeoutMs = timeout === undefined ? undefined : Number(timeout) * 1000;
  if (timeoutMs !== undefined && !(timeoutMs > 0)) return '--timeout needs a positive number of seconds';
  const watchSec = values.watch === undefined ? undefined : Number(values.watch);
  if (watchSec !== undefined && !(watchSec >= 0.5 && watchSec <= 3600))
    return `--watch ${JSON.stringify(values.watch)} is not allowed: use 0.5 to 3600 seconds`;
  return {
    command: 'stats',
    stack: positionals[0],
    specFile: values.spec,
    json: values.json ?? false,
    watchSec,
    timeoutMs,
    limit: values.limit?.split(',').filter(Boolean),
  };
}

/** The parsed command line, or the message of a usage error. */
export function parseCliArgs(argv: readonly string[], env: NodeJS.ProcessEnv): CliArgs | StatsArgs | string {
  const [mode, ...rest] = argv;
  if (!mode) return 'missing command';
  if (!Object.hasOwn(COMMANDS, mode)) return `unknown command ${JSON.stringify(mode)}`;
  if (mode === 'stats') return statsArgs(rest, env);
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true; args: string[] }>>;
  try {
    parsed = parseArgs({ args: [...rest], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    return (error as Error).message.replace(/\. To specify a positional argument.*$/s, '');
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) return `one STACK_DIR at most (got ${positionals.map((p) => JSON.stringify(p)).join(', ')})`;
  // Terraform's provisioners pass no options, so the environment can set the timeout for them.
  const timeout = values.timeout ?? env.TULA_DSR_SSH_TIMEOUT;
  const timeoutMs = timeout === undefined ? undefined : Number(timeout) * 1000;
  if (timeoutMs !== undefined && !(timeoutMs > 0)) return '--timeout needs a positive number of seconds';
  return {
    mode: mode as RunMode,
    stack: positionals[0],
    specFile: values.spec,
    diff: values.diff ?? false,
    json: values.json ?? false,
    timeoutMs,
    limit: values.limit?.split(',').filter(Boolean),
  };
}
