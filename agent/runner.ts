import { HostSpec, SpecError, formatSshTarget, sha256Hex } from '../model';
import { FactsRequest, HostFacts, parseHostFacts, renderFactsScript } from './facts/gather';
import { ApplyOutcome, parseApplyOutput, renderApplyScript } from './script';
import { connect, ConnectOptions, SshConnection } from './ssh/connection';
import { isSshError } from './ssh/errors';
import { DEFAULT_SSH_PORT, DEFAULT_SSH_USER, type SshTarget } from './ssh/target';
import { parseSpecJson, validateHostSpec } from './spec-input';
import { BACKEND_STATE, backendFactsRequest, planBackendTasks } from './tasks/backend';
import { BALANCER_STATE, LocalFacts, balancerFactsRequest, planBalancerTasks } from './tasks/balancer';
import { peerHostKeys } from './tasks/flow-copy';
import { planRemoveTasks } from './tasks/remove';
import { PreparedPlan, prepareHostPlan } from './tasks/prepare';
import { backupCleanupCommand, cmd, removeDirsCommands } from './tasks/steps';
import { journalStep } from './tasks/state-file';
import { hostFileCache } from './facts/file-cache';
import { withRecordedListings } from './tasks/nft';
import type { HostPlanResult } from './tasks/host-plan';
import { journalPath } from './state';
import type { Task, TaskStatus } from './tasks/task';

export type RunMode = 'apply' | 'check' | 'remove';

export interface TaskResult {
  readonly name: string;
  readonly status: TaskStatus;
  readonly detail: string;
  readonly diff?: string;
}

export interface RunError {
  readonly kind: string;
  readonly message: string;
  readonly task?: string;
  readonly command?: string;
  readonly exitCode?: number;
  readonly stderr?: string;
}

export interface HostRunResult {
  readonly host: string;
  readonly kind?: 'balancer' | 'backend';
  readonly target?: string;
  readonly mode: RunMode;
  readonly generation?: string;
  readonly tasks: TaskResult[];
  readonly counts: { ok: number; changed: number; failed: number; skipped: number };
  readonly error?: RunError;
  readonly roundTrips: number;
  readonly durationMs: number;
}

export interface RunOptions {
  readonly connectOptions?: ConnectOptions;
  /** Progress lines (to stderr in the CLI). */
  readonly progress?: (line: string) => void;
  /** Reuse a connection (tests, benchmarks); the runner then does not close it. */
  readonly connection?: SshConnection;
  /** Resolves the spec's key and known_hosts paths (`~/`, relative). Default: as given. */
  readonly resolvePath?: (path: string) => string;
  /** Once aborted, the host does not start applying changes (the run reports `interrupted`). */
  readonly signal?: AbortSignal;
  /** The root of the agent's copies of hosts' large files (see FileCache); none by default. */
  readonly cacheRoot?: string | null;
}

const MAX_STALE_RETRIES = 3;

/** Whether two targets are the same once the defaults validation fills in (port, user) are applied. */
function sameTarget(a: SshTarget, b: SshTarget): boolean {
  const filled = (t: SshTarget): Record<string, unknown> => ({ ...t, port: t.port ?? DEFAULT_SSH_PORT, user: t.user ?? DEFAULT_SSH_USER });
  const [x, y] = [filled(a), filled(b)];
  return [...new Set([...Object.keys(x), ...Object.keys(y)])].every((k) => x[k] === y[k]);
}

/** A connection started from the spec's `ssh` before the spec was validated (see connectEarly). */
interface EarlyConnection {
  /** The connection, when the validated spec names the same target; otherwise it is abandoned and undefined returned. */
  takeIfFor(target: SshTarget): Promise<SshConnection> | undefined;
  /** The spec was refused: the connection is dropped (closed if it was made). */
  abandon(): void;
}

/**
 * Starts connecting to the target the spec's JSON names, before the spec is validated, so that the handshake's round
 * trips overlap validation. Only when that `ssh` object has the shape of a target (the connection checks it fully,
 * with the schema synth uses); the run takes it only if the validated spec names the very same target.
 */
function connectEarly(data: unknown, options: RunOptions): EarlyConnection | undefined {
  const ssh = (data as { ssh?: unknown } | null)?.ssh as Record<string, unknown> | undefined;
  if (typeof ssh !== 'object' || ssh === null || Array.isArray(ssh)) return undefined;
  if (![ssh.privateKeyPath, ssh.knownHostsFile].every((p) => p === undefined || typeof p === 'string')) return undefined;
  const target = targetOf({ ssh } as unknown as HostSpec, options.resolvePath);
  const aborter = new AbortController();
  const pending = connect(target, { ...options.connectOptions, signal: aborter.signal });
  // nothing may be left unhandled: an early connection that is not taken is closed, or its error dropped
  pending.catch(() => undefined);
  const abandon = () => {
    aborter.abort();
    pending.then(
      (c) => c.close(),
      () => undefined,
    );
  };
  return {
    takeIfFor: (wanted) => {
      if (sameTarget(wanted, target)) return pending;
      abandon();
      return undefined;
    },
    abandon,
  };
}

export function targetOf(spec: HostSpec, resolvePath: (path: string) => string = (p) => p): SshTarget {
  const ssh = spec.ssh;
  return {
    ...ssh,
    privateKeyPath: ssh.privateKeyPath === undefined ? undefined : resolvePath(ssh.privateKeyPath),
    knownHostsFile: ssh.knownHostsFile === undefined ? undefined : resolvePath(ssh.knownHostsFile),
  };
}

function count(tasks: readonly TaskResult[]) {
  const c = { ok: 0, changed: 0, failed: 0, skipped: 0 };
  for (const t of tasks) c[t.status]++;
  return c;
}

function factsRequest(spec: HostSpec): FactsRequest {
  return spec.kind === 'balancer' ? balancerFactsRequest(spec) : backendFactsRequest(spec);
}

function decide(
  spec: HostSpec,
  facts: HostFacts,
  mode: RunMode,
  specText: string,
  generation: string,
  local: LocalFacts = {},
  prepared?: PreparedPlan,
): { tasks: Task[]; final: string[]; journal?: Task; relist?: string; texts?: HostPlanResult['texts'] } {
  const statePath = spec.kind === 'balancer' ? BALANCER_STATE : BACKEND_STATE;
  // every run that gets to its end has recorded what an interrupted run's journal held
  const dropJournal = cmd('rm', '-f', journalPath(statePath));
  if (mode === 'remove') {
    const { tasks, removedFiles } = planRemoveTasks(facts, statePath, generation);
    return { tasks, final: [backupCleanupCommand(removedFiles), dropJournal, ...removeDirsCommands(facts.state?.dirs ?? [])] };
  }
  const planned =
    spec.kind === 'balancer'
      ? planBalancerTasks(spec, facts, specText, generation, local, prepared?.kind === 'balancer' ? prepared.balancer : undefined)
      : planBackendTasks(spec, facts, specText, generation, prepared?.kind === 'backend' ? prepared.backend : undefined);
  const journal = planned.journal && {
    name: `journal ${journalPath(statePath)}`,
    status: 'changed' as const,
    detail: 'written before the first change',
    steps: [
      journalStep(
        statePath,
        planned.journal,
        (planned.dirs ?? planned.journal.dirs).filter((d) => facts.dirs[d] === false),
      ),
    ],
  };
  return {
    tasks: planned.tasks,
    final: [backupCleanupCommand(planned.writtenFiles), dropJournal, ...(planned.recordedCommands ?? [])],
    journal,
    relist: planned.relist,
    texts: planned.texts,
  };
}

/** Why a run with an unreadable state file (or journal) changes nothing, and how to recover. */
export function unreadableStateMessage(path: string, problem: string): string {
  return (
    `${path} cannot be read: ${problem}. It records what tula-dsr created on this host and the sysctl values the host had ` +
    "before; going on without it would record tula-dsr's own values as the originals and make remove leave its VIPs behind, " +
    `so nothing was changed. Restore the file from a backup or repair it; or move it away (mv ${path} ${path}.broken) and ` +
    'run again to start afresh, knowing that remove will then neither restore those sysctls nor delete what the lost file recorded'
  );
}

/** The text of each of a task's steps that `byStep` has (warnings, failed undos), joined. */
function stepTexts(steps: readonly number[], byStep: ReadonlyMap<number, string>): string | undefined {
  const texts = steps.filter((n) => byStep.has(n)).map((n) => byStep.get(n) || '(no message)');
  return texts.length ? texts.join('; ') : undefined;
}

/**
 * Maps the apply script's outcome back to tasks: done (with any warning), failed (with command and stderr), rolled
 * back, rollback failed, skipped.
 */
function outcomeToResults(tasks: readonly Task[], owners: readonly number[], outcome: ApplyOutcome): { results: TaskResult[]; error?: RunError } {
  const stepsOf = new Map<number, number[]>();
  owners.forEach((owner, i) => stepsOf.set(owner, [...(stepsOf.get(owner) ?? []), i + 1]));
  const failure = outcome.failure;
  const failedTask = failure ? owners[failure.step - 1] : undefined;
  const undoFailed = tasks.filter((_, index) => stepTexts(stepsOf.get(index) ?? [], outcome.undoFailures) !== undefined).map((t) => t.name);
  const rollback = undoFailed.length
    ? `rolling back failed for ${undoFailed.join(', ')}: those changes may still be on the host; fix the cause and run apply again`
    : 'every change of this run was rolled back';
  let error: RunError | undefined;
  const results = tasks.map((task, index): TaskResult => {
    const steps = stepsOf.get(index) ?? [];
    const undoProblem = stepTexts(steps, outcome.undoFailures);
    if (task.status !== 'changed') return { name: task.name, status: task.status, detail: task.detail, diff: task.diff };
    if (failure === undefined) {
      const warning = stepTexts(steps, outcome.warnings);
      return { name: task.name, status: 'changed', detail: warning ? `${task.detail}; warning: ${warning}` : task.detail, diff: task.diff };
    }
    if (index === failedTask) {
      const command = task.steps[failure.step - 1 - owners.indexOf(index)]?.run ?? '?';
      error = {
        kind: 'task-failed',
        task: task.name,
        command: command.length > 300 ? `${command.slice(0, 300)}…` : command,
        exitCode: failure.exitCode,
        stderr: failure.stderr,
        message: `${task.name}: command exited with ${failure.exitCode}${failure.stderr ? `: ${failure.stderr}` : ''}; ${rollback}`,
      };
      return { name: task.name, status: 'failed', detail: undoProblem ? `${error.message}; its undo failed: ${undoProblem}` : error.message };
    }
    if (undoProblem) return { name: task.name, status: 'failed', detail: `rolling back failed: ${undoProblem}` };
    const ran = steps.some((n) => n < failure.step);
    return { name: task.name, status: 'skipped', detail: ran ? 'rolled back' : 'not run: an earlier task failed' };
  });
  return { results, error };
}

/** Brings one host to its spec (apply), reports the difference (check), or undoes tula-dsr (remove). */
export async function runHost(specText: string, mode: RunMode, options: RunOptions = {}): Promise<HostRunResult> {
  const started = Date.now();
  const progress = options.progress ?? (() => undefined);
  let spec: HostSpec;
  let early: EarlyConnection | undefined;
  try {
    const data = parseSpecJson(specText);
    early = options.connection ? undefined : connectEarly(data, options);
    // the connection's first exchanges go out and come back while the spec is validated (a 10,000-VIP spec: ~60 ms)
    if (early) await new Promise((resolve) => setImmediate(resolve));
    spec = validateHostSpec(data);
  } catch (error) {
    early?.abandon();
    const message = error instanceof SpecError ? error.message : String(error);
    return { host: '(spec)', mode, tasks: [], counts: count([]), error: { kind: 'spec', message }, roundTrips: 0, durationMs: Date.now() - started };
  }
  const generation = sha256Hex(specText);
  const host = spec.name;
  const target = formatSshTarget(spec.ssh);
  const base = { host, kind: spec.kind, target, mode, generation };
  let connection = options.connection;
  let applying = false;
  try {
    if (!connection) {
      const wanted = targetOf(spec, options.resolvePath);
      connection = await (early?.takeIfFor(wanted) ?? connect(wanted, options.connectOptions));
    }
    const startTrips = connection.roundTrips;
    progress(`${host}: connected to ${target}`);
    const cache = hostFileCache(options.cacheRoot ?? null, `${spec.kind} ${spec.name} ${target}`);
    const plain = factsRequest(spec);
    let request: FactsRequest = { ...plain, readOnly: mode === 'check', known: cache?.read([...plain.files, plain.statePath]) };
    // made while the host runs the facts script, where the agent would only wait
    let prepared: PreparedPlan | undefined;
    const prepare = () => {
      if (mode === 'remove' || prepared) return;
      try {
        prepared = prepareHostPlan(spec);
      } catch {
        // decide makes the plan without it, and reports the fault there
      }
    };
    for (let attempt = 1; ; attempt++) {
      const factsRun = await connection.run(renderFactsScript(request), { onWritten: prepare });
      const facts = parseHostFacts(factsRun.stdout, request);
      const fresh = [...Object.values(facts.files), ...(facts.stateFile ? [facts.stateFile] : [])].filter((f) => request.known?.[f.path] !== f);
      cache?.write(fresh);
      if (facts.stateProblem) {
        const error = { kind: 'state', message: unreadableStateMessage(facts.stateProblem.path, facts.stateProblem.problem) };
        return { ...base, tasks: [], counts: count([]), error, roundTrips: connection.roundTrips - startTrips, durationMs: Date.now() - started };
      }
      const local: LocalFacts = spec.kind === 'balancer' && spec.pair ? { peerKeys: peerHostKeys(spec.pair.peerSsh, options.resolvePath) } : {};
      const { tasks, final, journal, relist, texts } = decide(spec, facts, mode, specText, generation, local, prepared);
      if (relist && request.nftTables.some((t) => t.generation)) {
        progress(`${host}: ${relist}: listing it`);
        request = { ...request, nftTables: request.nftTables.map((t) => ({ ...t, generation: false })) };
        continue;
      }
      const decided = tasks.map((t) => ({ name: t.name, status: t.status, detail: t.detail, diff: t.diff }));
      const failedTask = tasks.find((t) => t.status === 'failed');
      const pending = tasks.filter((t) => t.status === 'changed');
      if (failedTask || mode === 'check' || pending.length === 0) {
        const results = failedTask
          ? decided.map((t) => (t.status === 'changed' ? { ...t, status: 'skipped' as const, detail: `not run: ${failedTask.name} failed` } : t))
          : decided;
        const error = failedTask ? { kind: 'task-failed', task: failedTask.name, message: `${failedTask.name}: ${failedTask.detail}` } : undefined;
        return { ...base, tasks: results, counts: count(results), error, roundTrips: connection.roundTrips - startTrips, durationMs: Date.now() - started };
      }
      const statePath = spec.kind === 'balancer' ? BALANCER_STATE : BACKEND_STATE;
      // The journal goes first and is not reported: it is how this run survives being killed, not a change of its own.
      const scriptTasks = journal ? [journal, ...tasks] : tasks;
      const { script, owners } = renderApplyScript(scriptTasks, statePath, facts.stateFingerprint, final);
      if (options.signal?.aborted) {
        return {
          ...base,
          tasks: decided,
          counts: count([]),
          error: { kind: 'interrupted', message: 'the caller went away before any change was applied; nothing changed' },
          roundTrips: connection.roundTrips - startTrips,
          durationMs: Date.now() - started,
        };
      }
      progress(`${host}: applying ${pending.length} change(s)`);
      applying = true;
      const run = await connection.run(script);
      applying = false;
      const outcome = parseApplyOutput(run.stdout);
      if (outcome.staleFacts && attempt < MAX_STALE_RETRIES) {
        progress(`${host}: another run changed the host meanwhile; gathering facts again`);
        continue;
      }
      if (outcome.lockTimeout || outcome.staleFacts) {
        const message = outcome.lockTimeout ? 'another tula-dsr run held the host lock for 120 s' : 'the host kept changing under concurrent runs';
        return {
          ...base,
          tasks: decided,
          counts: count([]),
          error: { kind: 'lock', message },
          roundTrips: connection.roundTrips - startTrips,
          durationMs: Date.now() - started,
        };
      }
      if (!outcome.finished && !outcome.failure) {
        const message = `the apply script ended early (exit ${run.code}${run.stderr.trim() ? `: ${run.stderr.trim()}` : ''}); run again to converge`;
        return {
          ...base,
          tasks: decided,
          counts: count([]),
          error: { kind: 'interrupted', message },
          roundTrips: connection.roundTrips - startTrips,
          durationMs: Date.now() - started,
        };
      }
      if (cache && mode === 'remove' && outcome.finished && !outcome.failure) cache.clear();
      if (cache && texts && outcome.finished && !outcome.failure) {
        const stateWritten = tasks.some((t) => t.name === `state ${texts.state.path}` && t.status === 'changed');
        const state = stateWritten ? withRecordedListings(texts.state.content, outcome.sections.get('recorded')) : null;
        cache.write([...texts.files, ...(state === null ? [] : [{ path: texts.state.path, content: state }])]);
      }
      const outcomeResults = outcomeToResults(scriptTasks, owners, outcome);
      const results = journal ? outcomeResults.results.slice(1) : outcomeResults.results;
      const error = outcomeResults.error;
      return { ...base, tasks: results, counts: count(results), error, roundTrips: connection.roundTrips - startTrips, durationMs: Date.now() - started };
    }
  } catch (error) {
    const info = isSshError(error)
      ? { kind: error.kind, message: error.message }
      : { kind: 'internal', message: error instanceof Error ? error.message : String(error) };
    // the apply script ignores a lost connection (or closed channel) and runs to its end, or rolls back, on the host
    if (applying && info.kind === 'connection-lost')
      info.message += ' while the apply script ran; the host completes or rolls back that run by itself: run apply again to converge';
    if (applying && (info.kind === 'run-timeout' || info.kind === 'output-limit'))
      info.message += '; the apply script goes on without it and completes or rolls back that run by itself: run apply again to converge';
    return { ...base, tasks: [], counts: count([]), error: info, roundTrips: connection?.roundTrips ?? 0, durationMs: Date.now() - started };
  } finally {
    if (connection && !options.connection) await connection.close();
  }
}
