import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  BalancerSpec,
  Pool,
  STATS_JSON_VERSION,
  SpecError,
  StatsJson,
  StatsJsonDocument,
  StatsJsonError,
  StatsSnapshot,
  buildStatsSnapshot,
  formatSshTarget,
  groupPools,
  renderStatsTable,
  statsJson,
} from '../../model';
import type { StatsArgs } from '../cli-args';
import { EXIT } from '../cli-args';
import type { CliIo } from '../io';
import { targetOf } from '../runner';
import { parseHostSpec, readStackHosts } from '../spec-input';
import { connect, SshConnection } from '../ssh/connection';
import { isSshError } from '../ssh/errors';
import { BalancerSample, SampleError, parseSampleOutput, renderSampleScript } from '../../model/stats-sample';

/** The balancer specs stats reads: every balancer of the stack (or those --limit names), or the --spec file's. */
function balancerSpecs(args: StatsArgs, io: CliIo): BalancerSpec[] {
  if (args.stack) {
    const hosts = readStackHosts(resolve(io.cwd, args.stack)).filter((h) => h.kind === 'balancer' && (!args.limit || args.limit.includes(h.name)));
    return hosts.map((h) => parseHostSpec(h.specText) as BalancerSpec);
  }
  const file = resolve(io.cwd, args.specFile!);
  const spec = parseHostSpec(readFileSync(file, 'utf8'));
  if (spec.kind !== 'balancer')
    throw new SpecError([{ path: file, field: 'kind', message: `is ${JSON.stringify(spec.kind)}: stats reads balancers only, give a balancer's spec` }]);
  return [spec];
}

type Outcome = { readonly snapshot: StatsSnapshot; readonly previous?: StatsSnapshot } | { readonly error: { kind: string; message: string } };

/** One balancer: its connection, kept open between samples, and its last snapshot (for rates). */
class BalancerReader {
  private connection?: SshConnection;
  private previous?: StatsSnapshot;
  private warned = false;
  private readonly pools: readonly Pool[];

  constructor(
    readonly spec: BalancerSpec,
    private readonly args: StatsArgs,
    private readonly io: CliIo,
    private readonly resolvePath: (path: string) => string,
  ) {
    this.pools = groupPools(spec.vips);
  }

  /** Connects if needed (again after a lost connection) and takes one sample: one round trip. */
  async sample(): Promise<Outcome> {
    try {
      if (!this.connection?.open) {
        await this.connection?.close();
        this.connection = await connect(targetOf(this.spec, this.resolvePath), {
          env: this.io.env,
          ...(this.args.timeoutMs ? { timeoutMs: this.args.timeoutMs } : {}),
        });
      }
      const run = await this.connection.run(renderSampleScript());
      const sample: BalancerSample = parseSampleOutput(run.stdout);
      if (sample.runtimeUnreadable && !this.warned) {
        this.warned = true;
        this.io.stderr(`tula-dsr: ${this.spec.name}: the runtime state file is not one this version reads; health is shown as unknown\n`);
      }
      const snapshot = buildStatsSnapshot({ spec: this.spec, pools: this.pools, ...sample });
      const previous = this.previous;
      this.previous = snapshot;
      return { snapshot, previous };
    } catch (error) {
      if (isSshError(error)) return { error: { kind: error.kind, message: error.message } };
      if (error instanceof SampleError) return { error: { kind: 'sample', message: error.message } };
      return { error: { kind: 'internal', message: error instanceof Error ? error.message : String(error) } };
    }
  }

  close(): Promise<void> {
    return this.connection?.close() ?? Promise.resolve();
  }
}

/** JSON (one document; one line each with --watch), or a table per balancer; errors in the table go where `errors` says. */
function render(readers: readonly BalancerReader[], outcomes: readonly Outcome[], args: StatsArgs, errors: (line: string) => void): string {
  if (args.json) {
    const document: StatsJsonDocument = {
      version: STATS_JSON_VERSION,
      balancers: outcomes.map((o, i): StatsJson | StatsJsonError =>
        'error' in o ? { balancer: readers[i].spec.name, error: o.error } : statsJson(o.snapshot, o.previous),
      ),
    };
    return args.watchSec ? `${JSON.stringify(document)}\n` : `${JSON.stringify(document, null, 2)}\n`;
  }
  const tables: string[] = [];
  outcomes.forEach((o, i) => {
    if ('error' in o) errors(`${readers[i].spec.name} (${formatSshTarget(readers[i].spec.ssh)}): ${o.error.message}\n`);
    else tables.push(renderStatsTable(o.snapshot, o.previous));
  });
  return tables.join('\n');
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((done) => {
    if (signal.aborted) return done();
    const timer = setTimeout(finish, ms);
    signal.addEventListener('abort', finish, { once: true });
    function finish() {
      clearTimeout(timer);
      signal.removeEventListener('abort', finish);
      done();
    }
  });
}

/** Resolves to null once `signal` aborts. */
function whenAborted(signal: AbortSignal): Promise<null> {
  return new Promise((done) => (signal.aborted ? done(null) : signal.addEventListener('abort', () => done(null), { once: true })));
}

/** The caller's stop signal, or one that Ctrl-C (SIGINT) and SIGTERM raise, for as long as `body` runs. */
async function untilStopped<T>(io: CliIo, body: (signal: AbortSignal) => Promise<T>): Promise<T> {
  if (io.signal) return body(io.signal);
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    return await body(controller.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/** Samples every `periodMs` and prints each frame, until `signal` aborts (exit 0), even in the middle of a sample. */
async function watch(readers: readonly BalancerReader[], args: StatsArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const periodMs = args.watchSec! * 1000;
  // a terminal gets each frame on a cleared screen; a pipe or file gets frames one after the other
  const clear = io.stdoutIsTty && !args.json ? '\x1b[H\x1b[2J' : '';
  const stopped = whenAborted(signal);
  let next = Date.now();
  for (let frame = 0; ; frame++) {
    if (frame > 0) await pause(next - Date.now(), signal);
    next = Math.max(next + periodMs, Date.now());
    const outcomes = await Promise.race([Promise.all(readers.map((r) => r.sample())), stopped]);
    if (outcomes === null) return EXIT.ok;
    // the first round shows whether the balancers can be read at all: if none can, retrying would only repeat that
    if (frame === 0 && outcomes.every((o) => 'error' in o)) {
      io.stdout(render(readers, outcomes, args, (line) => io.stderr(`tula-dsr: ${line}`)));
      return EXIT.failed;
    }
    const errors: string[] = [];
    const text = render(readers, outcomes, args, (line) => errors.push(line));
    io.stdout(clear + errors.join('') + text + (clear || args.json ? '' : '\n'));
  }
}

/**
 * `tula-dsr stats`: one sample of every balancer (in parallel), or with --watch one every N seconds over connections
 * kept open, with rates, until Ctrl-C. Exit 0 when every balancer answered (or the watch was stopped), 1 otherwise.
 */
export async function runStats(args: StatsArgs, io: CliIo, resolvePath: (path: string) => string): Promise<number> {
  if (!args.stack && !args.specFile) {
    io.stderr('tula-dsr: stats needs STACK_DIR or --spec FILE\n');
    return EXIT.usage;
  }
  let specs: BalancerSpec[];
  try {
    specs = balancerSpecs(args, io);
  } catch (error) {
    io.stderr(`tula-dsr: ${(error as Error).message}\n`);
    return EXIT.failed;
  }
  if (specs.length === 0) {
    io.stderr(`tula-dsr: no balancer ${args.limit ? `matches --limit ${args.limit.join(',')}` : 'in this stack'}\n`);
    return EXIT.usage;
  }
  const readers = specs.map((spec) => new BalancerReader(spec, args, io, resolvePath));
  try {
    if (args.watchSec) return await untilStopped(io, (signal) => watch(readers, args, io, signal));
    const outcomes = await Promise.all(readers.map((r) => r.sample()));
    io.stdout(render(readers, outcomes, args, (line) => io.stderr(`tula-dsr: ${line}`)));
    return outcomes.some((o) => 'error' in o) ? EXIT.failed : EXIT.ok;
  } finally {
    await Promise.all(readers.map((r) => r.close()));
  }
}
