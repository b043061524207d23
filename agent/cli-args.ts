import { parseArgs } from 'node:util';
import { SPEC_ENV_PREFIX } from '../model/agent-contract';
import type { RunMode } from './runner';

/**
 * The command line, defined once: the parser and the usage text both come from these tables. Node's own
 * `util.parseArgs` does the parsing, so the provisioner's entry loads nothing extra.
 */
export const COMMANDS: Readonly<Record<RunMode, string>> = {
  apply: 'bring each host to its spec (ok / changed / failed per task, then a recap)',
  check: 'change nothing; report what apply would change (drift detection)',
  remove: "undo what apply set up, if the host still runs this spec's generation",
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
  'run-timeout': { type: 'string', value: 'SECONDS', help: 'deadline of each remote script (default: $TULA_DSR_RUN_TIMEOUT, else 600)' },
  limit: { type: 'string', value: 'L', help: "only the hosts named in L (comma-separated host names, or 'balancer' / 'backend')" },
} as const satisfies Record<string, OptionDef>;

export const EXIT = { ok: 0, failed: 1, drift: 2, usage: 64 } as const;

function renderUsage(): string {
  const commands = Object.keys(COMMANDS).join('|');
  const width = Math.max(...Object.entries(OPTIONS).map(([name, o]) => `--${name}${'value' in o ? ` ${o.value}` : ''}`.length));
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
  readonly runTimeoutMs?: number;
  readonly limit?: readonly string[];
}

/** Milliseconds from an option's seconds (or the environment's, for Terraform's provisioners), or a usage error. */
function seconds(value: string | undefined, option: string): number | undefined | string {
  if (value === undefined) return undefined;
  const ms = Number(value) * 1000;
  return ms > 0 ? ms : `--${option} needs a positive number of seconds`;
}

/** The parsed command line, or the message of a usage error. */
export function parseCliArgs(argv: readonly string[], env: NodeJS.ProcessEnv): CliArgs | string {
  const [mode, ...rest] = argv;
  if (!mode) return 'missing command';
  if (!Object.hasOwn(COMMANDS, mode)) return `unknown command ${JSON.stringify(mode)}`;
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true; args: string[] }>>;
  try {
    parsed = parseArgs({ args: [...rest], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    return (error as Error).message.replace(/\. To specify a positional argument.*$/s, '');
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) return `one STACK_DIR at most (got ${positionals.map((p) => JSON.stringify(p)).join(', ')})`;
  // Terraform's provisioners pass no options, so the environment can set the timeouts for them.
  const timeoutMs = seconds(values.timeout ?? env.TULA_DSR_SSH_TIMEOUT, 'timeout');
  if (typeof timeoutMs === 'string') return timeoutMs;
  const runTimeoutMs = seconds(values['run-timeout'] ?? env.TULA_DSR_RUN_TIMEOUT, 'run-timeout');
  if (typeof runTimeoutMs === 'string') return runTimeoutMs;
  return {
    mode: mode as RunMode,
    stack: positionals[0],
    specFile: values.spec,
    diff: values.diff ?? false,
    json: values.json ?? false,
    timeoutMs,
    runTimeoutMs,
    limit: values.limit?.split(',').filter(Boolean),
  };
}
