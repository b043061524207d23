import { unlinkSync } from 'node:fs';
import { BalancerSpec, Pool, RuntimeState, StatsSnapshot, StatsTextfileSettings, buildStatsSnapshot, parseSampleOutput, renderSampleScript } from '../model';
import type { Logger } from './log';
import { runCommand } from './nft';
import type { CommandRunner } from './probe-routing';
import { writeStatsTextfile } from './textfile';

/** What a snapshot is built from: the runtime's configuration, its cached pool grouping and its current view. */
export interface StatsSource {
  readonly spec: BalancerSpec;
  readonly pools: readonly Pool[];
  /** The runtime's view now (health, fail open, active connections), not the state file, which may be seconds old. */
  state(): RuntimeState;
}

export interface StatsWriterDeps {
  readonly log: Logger;
  /** Runs the sample script. @default runCommand */
  readonly run?: CommandRunner;
  /** @default writeStatsTextfile */
  readonly write?: (snapshot: StatsSnapshot, path: string) => void;
  /** Removes a textfile this runtime no longer writes. @default unlink, a missing file is fine */
  readonly remove?: (path: string) => void;
}

function unlinkIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/**
 * Writes the balancer's statistics for node_exporter's textfile collector every `intervalSec`: the same sample
 * `tula-dsr stats` takes over SSH, run locally, built into a snapshot with the runtime's own view, rendered as
 * Prometheus text. A failed write is logged once per distinct error and retried at the next interval; it never stops
 * the runtime. Moving the file (or no longer writing one) removes the file written before.
 */
export class StatsWriter {
  private settings: StatsTextfileSettings | null = null;
  private timer: NodeJS.Timeout | undefined;
  /** Changes with every configure and stop: a sample taken before belongs to another configuration and is dropped. */
  private generation = 0;
  /** The generation whose write is running: a new configuration's first write does not wait for an old one. */
  private running: number | null = null;
  private lastError: string | null = null;

  constructor(
    private readonly source: () => StatsSource,
    private readonly deps: StatsWriterDeps,
  ) {}

  /**
   * Takes the settings of the configuration the runtime has just loaded: starts, re-times, moves or ends the
   * textfile, and writes at once (so the figures follow a new configuration without waiting an interval); resolves
   * when that first write is done.
   */
  configure(settings: StatsTextfileSettings | null): Promise<void> {
    const before = this.settings;
    this.halt();
    this.settings = settings;
    if (before && before.path !== settings?.path) {
      this.lastError = null;
      this.removeFile(before.path, settings ? `moved to ${settings.path}` : 'no longer configured');
    }
    if (!settings) return Promise.resolve();
    if (before?.path !== settings.path || before.intervalSec !== settings.intervalSec)
      this.deps.log('info', `statistics textfile ${settings.path}: written every ${settings.intervalSec} s`);
    this.timer = setInterval(() => void this.tick(), settings.intervalSec * 1000);
    return this.tick();
  }

  /**
   * Stops writing (SIGTERM). The file stays: a restarted runtime goes on writing it, and node_exporter keeps the last
   * figures meanwhile; the agent removes it when it stops the runtime for good.
   */
  stop(): void {
    this.halt();
    this.settings = null;
  }

  /** One interval's write, unless the previous one is still running (a slow listing is not doubled). */
  async tick(): Promise<void> {
    const generation = this.generation;
    if (this.running === generation) return;
    this.running = generation;
    try {
      await this.writeOnce();
    } finally {
      if (this.running === generation) this.running = null;
    }
  }

  /** Samples and writes once; whether the file was written (failures are logged, never thrown). */
  async writeOnce(): Promise<boolean> {
    const settings = this.settings;
    if (!settings) return false;
    const generation = this.generation;
    try {
      const sampled = await (this.deps.run ?? runCommand)(['sh', '-c', renderSampleScript()]);
      if (generation !== this.generation) return false;
      if (sampled.code !== 0) throw new Error(`the sample script exited ${sampled.code}: ${sampled.stderr.trim()}`);
      const sample = parseSampleOutput(sampled.stdout);
      const source = this.source();
      const snapshot = buildStatsSnapshot({
        spec: source.spec,
        pools: source.pools,
        counters: sample.counters,
        runtime: source.state(),
        sampledAt: sample.sampledAt,
        listingMs: sample.listingMs,
      });
      (this.deps.write ?? writeStatsTextfile)(snapshot, settings.path);
      if (this.lastError !== null) this.deps.log('info', `statistics textfile ${settings.path}: written again`);
      this.lastError = null;
      return true;
    } catch (error) {
      if (generation !== this.generation) return false;
      const message = (error as Error).message;
      if (message !== this.lastError)
        this.deps.log(
          'error',
          `statistics textfile ${settings.path}: ${message} (retried every ${settings.intervalSec} s; logged again when the error changes)`,
        );
      this.lastError = message;
      return false;
    }
  }

  private halt(): void {
    this.generation++;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private removeFile(path: string, why: string): void {
    try {
      (this.deps.remove ?? unlinkIfThere)(path);
      this.deps.log('info', `statistics textfile ${path}: removed (${why})`);
    } catch (error) {
      this.deps.log('error', `statistics textfile ${path}: cannot remove it (${why}): ${(error as Error).message}`);
    }
  }
}
