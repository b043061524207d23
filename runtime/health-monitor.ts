import { performance } from 'node:perf_hooks';
import { ProbeTarget, keyProbeIdentity } from '../model';
import { Health, HealthState, initialHealth, recordResult } from './health-state';
import { ProbeOptions, ProbeResult, runProbe } from './probes';

/** Where a target's probes go: the runtime routes them through the VIP to the backend (by their source port). */
export type ProbeRoute = Omit<ProbeOptions, 'timeoutMs' | 'signal'>;

export interface HealthMonitorOptions {
  /** Where each target's probes connect. */
  readonly route: (target: ProbeTarget) => ProbeRoute;
  /**
   * Probes in flight at most; the others wait their turn.
   * @default 64
   */
  readonly maxConcurrent?: number;
  /**
   * Each interval is shortened by up to this fraction at random, so targets that started together drift apart. Never
   * lengthened: a failure is still noticed within `intervalSec × fall + timeoutSec`.
   * @default 0.1
   */
  readonly jitter?: number;
  /** @default runProbe */
  readonly probe?: (target: ProbeTarget, options: ProbeOptions) => Promise<ProbeResult>;
  /** @default Math.random */
  readonly random?: () => number;
  /** Wall-clock time in ms, for `since` and `at`. @default Date.now */
  readonly now?: () => number;
}

/** A target's health changed. */
export interface Transition {
  readonly key: string;
  readonly target: ProbeTarget;
  readonly health: Health;
  /** Why, in a few words: "failed 3 probes in a row (last: connection refused)". */
  readonly reason: string;
  readonly at: number;
}

/** One probe's result, with the target's health after it. */
export interface ProbeReport {
  readonly key: string;
  readonly target: ProbeTarget;
  readonly result: ProbeResult;
  readonly health: Health;
  readonly at: number;
}

export interface TargetStatus extends HealthState {
  readonly key: string;
  readonly target: ProbeTarget;
  readonly lastProbeAt?: number;
  readonly lastResult?: ProbeResult;
  /** Probes run and failed since this process started probing the target. */
  readonly probes: number;
  readonly failures: number;
}

/** What the runtime remembers of a target from before (its state file). */
export interface SavedHealth {
  readonly health: Health;
  readonly since?: number;
}

interface Entry {
  target: ProbeTarget;
  state: HealthState;
  removed: boolean;
  timer?: NodeJS.Timeout;
  controller?: AbortController;
  inflight?: Promise<void>;
  lastProbeAt?: number;
  lastResult?: ProbeResult;
  probes: number;
  failures: number;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Targets with the same key are one target: their VIPs are merged. */
function mergeTargets(targets: readonly ProbeTarget[]): Map<string, ProbeTarget> {
  const merged = new Map<string, ProbeTarget>();
  for (const target of targets) {
    const known = merged.get(target.key);
    merged.set(target.key, known ? { ...known, vips: [...new Set([...known.vips, ...target.vips])].sort() } : target);
  }
  return merged;
}

/**
 * Probes each target every `check.intervalSec` (first at a random point of its first interval, so that targets
 * spread out), at most `maxConcurrent` at once, feeds the rise/fall state machine and reports transitions and probe
 * results. `replace` applies a new configuration: targets that stay keep their state and their rhythm, and a target
 * whose check changed only in its timings keeps its health.
 */
export class HealthMonitor {
  private readonly entries = new Map<string, Entry>();
  private readonly queue: Entry[] = [];
  private readonly transitionListeners = new Set<(t: Transition) => void>();
  private readonly probeListeners = new Set<(r: ProbeReport) => void>();
  private active = 0;
  private running = false;
  private readonly maxConcurrent: number;
  private readonly jitter: number;
  private readonly probe: NonNullable<HealthMonitorOptions['probe']>;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(private readonly options: HealthMonitorOptions) {
    this.maxConcurrent = options.maxConcurrent ?? 64;
    this.jitter = options.jitter ?? 0.1;
    this.probe = options.probe ?? runProbe;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    if (!(this.maxConcurrent >= 1)) throw new Error(`maxConcurrent must be at least 1, not ${this.maxConcurrent}`);
    if (!(this.jitter >= 0 && this.jitter < 1)) throw new Error(`jitter must be from 0 to less than 1, not ${this.jitter}`);
  }

  /** Starts probing; `saved` gives targets (by key, or by key without timings) the health they had before. */
  start(targets: readonly ProbeTarget[], saved?: ReadonlyMap<string, SavedHealth>): void {
    if (this.running) throw new Error('the health monitor is already running');
    this.running = true;
    this.apply(targets, saved);
  }

  /** Applies a new configuration while running. */
  replace(targets: readonly ProbeTarget[], saved?: ReadonlyMap<string, SavedHealth>): void {
    if (!this.running) throw new Error('the health monitor is not running; call start first');
    this.apply(targets, saved);
  }

  /** Stops every timer and aborts the probes in flight; resolves when they have ended. */
  async stop(): Promise<void> {
    this.running = false;
    const inflight = [...this.entries.values()].flatMap((e) => (e.inflight ? [e.inflight] : []));
    for (const entry of this.entries.values()) this.retire(entry);
    this.entries.clear();
    this.queue.length = 0;
    await Promise.all(inflight);
  }

  status(): TargetStatus[] {
    return [...this.entries.entries()].map(([key, e]) => ({
      key,
      target: e.target,
      ...e.state,
      probes: e.probes,
      failures: e.failures,
      ...(e.lastProbeAt !== undefined && { lastProbeAt: e.lastProbeAt }),
      ...(e.lastResult && { lastResult: e.lastResult }),
    }));
  }

  /** Calls `listener` on every health change; returns the function that unsubscribes it. */
  onTransition(listener: (t: Transition) => void): () => void {
    this.transitionListeners.add(listener);
    return () => this.transitionListeners.delete(listener);
  }

  /** Calls `listener` after every probe; returns the function that unsubscribes it. */
  onProbe(listener: (r: ProbeReport) => void): () => void {
    this.probeListeners.add(listener);
    return () => this.probeListeners.delete(listener);
  }

  private apply(targets: readonly ProbeTarget[], saved?: ReadonlyMap<string, SavedHealth>): void {
    const incoming = mergeTargets(targets);
    const previous = new Map<string, SavedHealth>();
    for (const [key, entry] of this.entries) previous.set(keyProbeIdentity(key), entry.state);
    const savedByIdentity = new Map<string, SavedHealth>();
    for (const [key, health] of saved ?? []) savedByIdentity.set(keyProbeIdentity(key), health);
    for (const [key, entry] of this.entries) {
      if (incoming.has(key)) continue;
      this.retire(entry);
      this.entries.delete(key);
    }
    const now = this.now();
    for (const [key, target] of incoming) {
      const kept = this.entries.get(key);
      if (kept) {
        kept.target = target;
        continue;
      }
      const identity = keyProbeIdentity(key);
      const before = saved?.get(key) ?? previous.get(identity) ?? savedByIdentity.get(identity);
      const entry: Entry = { target, state: initialHealth(now, before), removed: false, probes: 0, failures: 0 };
      this.entries.set(key, entry);
      this.schedule(entry, this.random() * target.check.intervalSec * 1000);
    }
  }

  private retire(entry: Entry): void {
    entry.removed = true;
    clearTimeout(entry.timer);
    entry.controller?.abort();
  }

  private schedule(entry: Entry, delayMs: number): void {
    entry.timer = setTimeout(
      () => {
        entry.timer = undefined;
        this.queue.push(entry);
        this.pump();
      },
      Math.max(0, delayMs),
    );
  }

  private pump(): void {
    while (this.active < this.maxConcurrent && this.queue.length > 0) {
      const entry = this.queue.shift()!;
      if (!entry.removed) this.run(entry);
    }
  }

  private run(entry: Entry): void {
    this.active += 1;
    const controller = new AbortController();
    entry.controller = controller;
    const started = performance.now();
    const target = entry.target;
    const probe = async (): Promise<ProbeResult> => {
      try {
        return await this.probe(target, { ...this.options.route(target), signal: controller.signal });
      } catch (error) {
        return { ok: false, ms: 0, error: `probe error: ${(error as Error).message}` };
      }
    };
    entry.inflight = probe()
      .then((result) => {
        if (entry.removed) return;
        this.record(entry, result);
        const interval = target.check.intervalSec * 1000 * (1 - this.jitter * this.random());
        this.schedule(entry, interval - (performance.now() - started));
      })
      .finally(() => {
        this.active -= 1;
        entry.controller = undefined;
        entry.inflight = undefined;
        this.pump();
      });
  }

  private record(entry: Entry, result: ProbeResult): void {
    const at = this.now();
    const { check } = entry.target;
    const step = recordResult(entry.state, result.ok, check, at);
    entry.state = step.state;
    entry.lastProbeAt = at;
    entry.lastResult = result;
    entry.probes += 1;
    if (!result.ok) entry.failures += 1;
    const key = entry.target.key;
    for (const listener of this.probeListeners) listener({ key, target: entry.target, result, health: step.state.health, at });
    if (!step.changed) return;
    const reason =
      step.changed === 'down'
        ? `failed ${plural(check.fall, 'probe')} in a row (last: ${result.error ?? 'failed'})`
        : `passed ${plural(check.rise, 'probe')} in a row`;
    for (const listener of this.transitionListeners) listener({ key, target: entry.target, health: step.changed, reason, at });
  }
}
