import { parseArgs } from 'node:util';
import { SPEC_ENV_PREFIX } from '../model/agent-contract';
import { GITHUB_COMMENT_LIMIT, MIN_REVIEW_CHARS, REVIEW_FORMATS, ReviewFormat } from '../model/plan-review';
import type { RunMode } from './runner';

/**
 * The command line, defined once: the parser and the usage text both come from these tables. Commands that take
 * the same arguments form a group with one option table. Node's own `util.parseArgs` does the parsing, so the
 * provisioner's entry loads nothing extra.
 */
interface OptionDef {
  readonly type: 'boolean' | 'string';
  /** Placeholder for the value in the usage text. */
  readonly value?: string;
  readonly help: string;
}

interface GroupDef {
  /** What the positional arguments are, as [name, help] lines of the usage text. */
  readonly operands: readonly (readonly [string, string])[];
  readonly options: Readonly<Record<string, OptionDef>>;
  readonly exits: string;
}

export const EXIT = { ok: 0, failed: 1, drift: 2, changes: 2, usage: 64 } as const;

const HOST_OPTIONS = {
  spec: { type: 'string', value: 'FILE', help: 'one host spec (JSON) from a file' },
  diff: { type: 'boolean', help: 'show before/after text of files and rulesets' },
  json: { type: 'boolean', help: 'print machine-readable results on stdout' },
  timeout: { type: 'string', value: 'SECONDS', help: 'SSH connect timeout per attempt (default: $TULA_DSR_SSH_TIMEOUT, else 10)' },
  'run-timeout': { type: 'string', value: 'SECONDS', help: 'deadline of each remote script (default: $TULA_DSR_RUN_TIMEOUT, else 600)' },
  limit: { type: 'string', value: 'L', help: "only the hosts named in L (comma-separated host names, or 'balancer' / 'backend')" },
} as const satisfies Record<string, OptionDef>;

const REVIEW_OPTIONS = {
  format: { type: 'string', value: REVIEW_FORMATS.join('|'), help: 'markdown for a pull-request comment (default), text for a terminal' },
  'max-chars': {
    type: 'string',
    value: 'N',
    help: `longest output: past it the longest parts are cut, and the review says so (default: ${GITHUB_COMMENT_LIMIT}, GitHub's comment limit, for markdown; none for text)`,
  },
} as const satisfies Record<string, OptionDef>;

/** stats takes the host options that make sense for reading a balancer, and --watch. */
const STATS_OPTIONS = {
  spec: { type: 'string', value: 'FILE', help: 'one balancer spec (JSON) from a file' },
  json: { type: 'boolean', help: 'print the figures as JSON (with --watch, one document per line)' },
  watch: { type: 'string', value: '[SECONDS]', help: 'keep the connections open and sample every SECONDS (default 2), with rates, until Ctrl-C' },
  timeout: HOST_OPTIONS.timeout,
  limit: { type: 'string', value: 'L', help: 'only the balancers named in L (comma-separated)' },
} as const satisfies Record<string, OptionDef>;

export const DEFAULT_WATCH_SEC = 2;

const GROUPS = {
  hosts: {
    operands: [
      ['STACK_DIR', 'a synthesized stack (cdktf.out/stacks/NAME): every host in it, in parallel'],
      ['', '(backend hosts before balancers for apply, the reverse for remove)'],
      ['(neither)', `the spec Terraform's provisioner passes in ${SPEC_ENV_PREFIX}0, _1, …`],
    ],
    options: HOST_OPTIONS,
    exits: `${EXIT.ok} ok (check: in sync), ${EXIT.failed} failure, ${EXIT.drift} check found drift, ${EXIT.usage} usage error`,
  },
  review: {
    operands: [['PLAN_JSON', "a plan as `terraform show -json PLAN` writes it, one per stack; '-' reads standard input"]],
    options: REVIEW_OPTIONS,
    exits: `${EXIT.ok} no changes, ${EXIT.changes} changes, ${EXIT.failed} unreadable plan, ${EXIT.usage} usage error`,
  },
  stats: {
    operands: [['STACK_DIR', 'the balancers of a synthesized stack; their counters, read with one nft listing each']],
    options: STATS_OPTIONS,
    exits: `${EXIT.ok} ok, ${EXIT.failed} a balancer could not be read, ${EXIT.usage} usage error`,
  },
} as const satisfies Record<string, GroupDef>;

type GroupName = keyof typeof GROUPS;
export type CommandName = RunMode | 'review' | 'stats';

export const COMMANDS: Readonly<Record<CommandName, { readonly group: GroupName; readonly args: string; readonly help: string }>> = {
  apply: { group: 'hosts', args: '[STACK_DIR | --spec FILE]', help: 'bring each host to its spec (ok / changed / failed per task, then a recap)' },
  check: { group: 'hosts', args: '[STACK_DIR | --spec FILE]', help: 'change nothing; report what apply would change (drift detection)' },
  remove: { group: 'hosts', args: '[STACK_DIR | --spec FILE]', help: "undo what apply set up, if the host still runs this spec's generation" },
  review: { group: 'review', args: 'PLAN_JSON... | -', help: 'summarise a Terraform plan of tula-dsr hosts for a pull request' },
  stats: {
    group: 'stats',
    args: 'STACK_DIR | --spec FILE',
    help: 'live figures of each balancer: packets, bytes, flows, active connections, health (one SSH round trip each)',
  },
};

function renderUsage(): string {
  const entries = Object.entries(COMMANDS);
  const commandWidth = Math.max(...entries.map(([name, c]) => `${name} ${c.args}`.length));
  const optionText = ([name, o]: [string, OptionDef]) => `--${name}${o.value ? ` ${o.value}` : ''}`;
  const width = Math.max(
    ...Object.values(GROUPS).flatMap((g) => [...g.operands.map(([n]) => n.length), ...Object.entries(g.options).map((e) => optionText(e).length)]),
  );
  const groups = Object.entries(GROUPS).flatMap(([group, g]: [string, GroupDef]) => [
    '',
    `${entries
      .filter(([, c]) => c.group === group)
      .map(([name]) => name)
      .join(', ')}:`,
    ...g.operands.map(([name, help]) => `  ${name.padEnd(width)}  ${help}`),
    ...Object.entries(g.options).map((e) => `  ${optionText(e).padEnd(width)}  ${e[1].help}`),
    `  exit codes: ${g.exits}`,
  ]);
  return [
    'usage: tula-dsr <command> [arguments] [options]',
    '',
    ...entries.map(([name, c]) => `  ${`${name} ${c.args}`.padEnd(commandWidth)}  ${c.help}`),
    ...groups,
    '',
    'progress goes to stderr, results to stdout.',
  ].join('\n');
}

export const USAGE = renderUsage();

/** apply, check and remove: which hosts, and how to report. */
export interface HostCommandArgs {
  readonly command: RunMode;
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

/** review: the plans to read and how to print the review. */
export interface ReviewArgs {
  readonly command: 'review';
  readonly plans: readonly string[];
  readonly format: ReviewFormat;
  readonly maxChars?: number;
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

export type CliArgs = HostCommandArgs | ReviewArgs | StatsArgs;

function parseGroup<O extends Record<string, OptionDef>>(args: readonly string[], options: O) {
  try {
    return parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (error) {
    return (error as Error).message.replace(/\. To specify a positional argument.*$/s, '');
  }
}

function hostArgs(mode: RunMode, rest: readonly string[], env: NodeJS.ProcessEnv): HostCommandArgs | string {
  const parsed = parseGroup(rest, HOST_OPTIONS);
  if (typeof parsed === 'string') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length > 1) return `one STACK_DIR at most (got ${positionals.map((p) => JSON.stringify(p)).join(', ')})`;
  // Terraform's provisioners pass no options, so the environment can set the timeouts for them.
  const timeoutMs = seconds(values.timeout ?? env.TULA_DSR_SSH_TIMEOUT, 'timeout');
  if (typeof timeoutMs === 'string') return timeoutMs;
  const runTimeoutMs = seconds(values['run-timeout'] ?? env.TULA_DSR_RUN_TIMEOUT, 'run-timeout');
  if (typeof runTimeoutMs === 'string') return runTimeoutMs;
  return {
    command: mode,
    mode,
    stack: positionals[0],
    specFile: values.spec,
    diff: values.diff ?? false,
    json: values.json ?? false,
    timeoutMs,
    runTimeoutMs,
    limit: values.limit?.split(',').filter(Boolean),
  };
}

function reviewArgs(rest: readonly string[]): ReviewArgs | string {
  const parsed = parseGroup(rest, REVIEW_OPTIONS);
  if (typeof parsed === 'string') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length === 0) return 'review needs a plan: PLAN_JSON (terraform show -json PLAN > plan.json), or - for standard input';
  if (positionals.includes('-') && positionals.length > 1) return "'-' (standard input) cannot be combined with files";
  const format = values.format ?? 'markdown';
  if (!(REVIEW_FORMATS as readonly string[]).includes(format)) return `--format ${JSON.stringify(format)} is not supported; use ${REVIEW_FORMATS.join(' or ')}`;
  const maxChars = values['max-chars'] === undefined ? undefined : Number(values['max-chars']);
  if (maxChars !== undefined && !(Number.isInteger(maxChars) && maxChars >= MIN_REVIEW_CHARS)) {
    return `--max-chars ${JSON.stringify(values['max-chars'])} is not allowed; use an integer of at least ${MIN_REVIEW_CHARS}`;
  }
  return { command: 'review', plans: positionals, format: format as ReviewFormat, maxChars };
}

/** `--watch` takes an optional number: a following word that is a number is its value, as `--watch=N` always is. */
function statsArgs(rest: readonly string[], env: NodeJS.ProcessEnv): StatsArgs | string {
  const args: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] !== '--watch') args.push(rest[i]);
    else if (/^\d+(\.\d+)?$/.test(rest[i + 1] ?? '')) args.push(`--watch=${rest[++i]}`);
    else args.push(`--watch=${DEFAULT_WATCH_SEC}`);
  }
  const parsed = parseGroup(args, STATS_OPTIONS);
  if (typeof parsed === 'string') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length > 1) return `one STACK_DIR at most (got ${positionals.map((p) => JSON.stringify(p)).join(', ')})`;
  const timeoutMs = seconds(values.timeout ?? env.TULA_DSR_SSH_TIMEOUT, 'timeout');
  if (typeof timeoutMs === 'string') return timeoutMs;
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
export function parseCliArgs(argv: readonly string[], env: NodeJS.ProcessEnv): CliArgs | string {
  const [command, ...rest] = argv;
  if (!command) return 'missing command';
  if (!Object.hasOwn(COMMANDS, command)) return `unknown command ${JSON.stringify(command)}`;
  if (command === 'review') return reviewArgs(rest);
  if (command === 'stats') return statsArgs(rest, env);
  return hostArgs(command as RunMode, rest, env);
}
