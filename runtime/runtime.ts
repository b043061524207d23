import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  BackendSpec,
  BalancerSpec,
  LEAST_CONNECTIONS,
  Pool,
  PoolPolicy,
  RuntimeConfig,
  RuntimeState,
  configuredWeight,
  groupPools,
  managedSlotCount,
  parseRuntimeConfig,
  parseRuntimeState,
  poolClassid,
  poolName,
} from '../model';
import { LeastConnectionsPool } from './least-connections';
import type { Logger } from './log';
import type { NftListedElement, NftRunner } from './nft';
import { PoolSync } from './pool-sync';
import { writeFileAtomic } from './files';

/** What the runtime needs from the outside world, so that tests can drive it on a real table without a clock. */
export interface RuntimeDeps {
  readonly nft: NftRunner;
  readonly log: Logger;
  readonly now: () => number;
  readonly statePath: string;
  readonly readFile?: (path: string) => string;
}

/** A backend that failed its health check, per pool: pool id (8 hex) → backend names. */
export type DownView = ReadonlyMap<string, ReadonlySet<string>>;

/**
 * The runtime's core: the configuration the agent installed, the health view, least connections, and the pool sync.
 * It decides which backends of each managed pool take new flows, with which weights, and keeps the kernel's slot
 * tables in line with that; it records its view in the state file, which the agent reads before it renders.
 */
export class Runtime {
  private config!: RuntimeConfig;
  private configHash = '';
  private pools: Pool[] = [];
  private readonly sync: PoolSync;
  private readonly lc = new Map<string, LeastConnectionsPool>();
  private lcWeights = new Map<string, Map<string, number>>();
  private down: DownView = new Map();
  private failOpen = new Set<string>();
  private changedAt = new Map<string, number>();
  private readonly startedAt: number;

  constructor(
    private readonly configPath: string,
    private readonly deps: RuntimeDeps,
  ) {
    this.sync = new PoolSync(deps.nft);
    this.startedAt = Math.floor(deps.now() / 1000);
  }

  /** Reads the configuration (first start, or SIGHUP after the agent installed a new one or reloaded the table). */
  load(): void {
    const text = (this.deps.readFile ?? ((p) => readFileSync(p, 'utf8')))(this.configPath);
    this.config = parseRuntimeConfig(text);
    this.configHash = createHash('sha256').update(text).digest('hex');
    this.pools = groupPools(this.config.balancer.vips);
    for (const id of [...this.lc.keys()]) if (!this.pools.some((p) => poolName(p.id) === id)) this.lc.delete(id);
    // the agent may have reloaded the table: the next sync reads what the kernel holds
    this.sync.invalidate();
    // what an earlier run of the runtime had found stays true until probes say otherwise
    const saved = parseRuntimeState((this.deps.readFile ?? ((p) => readFileSync(p, 'utf8')))(this.deps.statePath).toString());
    if (saved && this.down.size === 0) this.down = downFromState(saved, this.pools);
  }

  get spec(): BalancerSpec {
    return this.config.balancer;
  }

  /** Applies the current view to the table the agent loaded (at start, and after it reloaded or reconfigured). */
  async start(): Promise<void> {
    await this.apply('start');
  }

  leastConnectionsIntervalMs(): number {
    return this.config.leastConnections.intervalMs;
  }

  /** A line for the log: what this runtime manages. */
  summary(): string {
    const managed = this.pools.filter((p) => p.managed);
    const lc = managed.filter((p) => LEAST_CONNECTIONS.includes(p.algorithm));
    return `${managed.length} managed pool(s), ${lc.length} by least connections`;
  }

  /** Sets which backends failed their checks (from the health monitor) and applies the consequences. */
  async setDown(down: DownView): Promise<void> {
    this.down = down;
    await this.apply('health');
  }

  /** One least-connections round: fold in the counters, re-weight, apply. */
  async leastConnectionsRound(): Promise<void> {
    const lcPools = this.pools.filter((p) => LEAST_CONNECTIONS.includes(p.algorithm));
    if (!lcPools.length) return;
    const counters = await this.readFlowCounters(lcPools);
    const now = this.deps.now();
    for (const pool of lcPools) {
      const id = poolName(pool.id);
      const state = this.lc.get(id) ?? new LeastConnectionsPool();
      this.lc.set(id, state);
      state.sample(counters.get(id) ?? new Map(), now);
      const backends = pool.backends.map((b) => ({ name: b.name, weight: this.takes(b, pool) ? configuredWeight(b, pool) : 0 }));
      this.lcWeights.set(id, state.weights(backends, managedSlotCount(pool), 2 * this.config.leastConnections.intervalMs));
    }
    await this.apply('least connections');
  }

  /** Whether a backend of a pool takes new flows: a weight, and not failed (unless every one failed: fail open). */
  private takes(b: BackendSpec, pool: Pool): boolean {
    if (b.weight <= 0) return false;
    const id = poolName(pool.id);
    return this.failOpen.has(id) || !this.down.get(id)?.has(b.name);
  }

  private policy(): PoolPolicy {
    return {
      takes: (b, pool) => this.takes(b, pool),
      weight: (b, pool) => this.lcWeights.get(poolName(pool.id))?.get(b.name),
    };
  }

  private async apply(why: string): Promise<void> {
    const wasOpen = new Set(this.failOpen);
    this.failOpen = new Set(
      this.pools
        .filter(
          (p) => p.managed && p.backends.some((b) => b.weight > 0) && p.backends.every((b) => b.weight <= 0 || this.down.get(poolName(p.id))?.has(b.name)),
        )
        .map((p) => poolName(p.id)),
    );
    for (const id of this.failOpen)
      if (!wasOpen.has(id)) this.deps.log('warn', `pool ${id} (${this.vipsOf(id)}): every backend failed its check; sending to all of them (fail open)`);
    for (const id of wasOpen)
      if (!this.failOpen.has(id)) this.deps.log('info', `pool ${id} (${this.vipsOf(id)}): a backend passes its check again; fail open ends`);
    const result = await this.sync.sync(this.config.balancer, this.config.facts, this.policy());
    const now = Math.floor(this.deps.now() / 1000);
    for (const id of result.pools) this.changedAt.set(id, now);
    if (result.pools.length && why !== 'least connections') {
      this.deps.log('info', `${why}: pools ${result.pools.join(', ')} updated (${result.elements} elements, ${result.ms} ms)`);
    }
    this.writeState();
  }

  private vipsOf(id: string): string {
    return this.pools.find((p) => poolName(p.id) === id)?.vips.join(', ') ?? '?';
  }

  /** New and ended flows per (pool, backend name), from the counter sets of the pools' modes. */
  private async readFlowCounters(pools: readonly Pool[]): Promise<Map<string, Map<string, { created: number; ended: number }>>> {
    const modes = [...new Set(pools.map((p) => p.mode))];
    const listed = await Promise.all(
      modes.flatMap((mode) =>
        (['new', 'ended'] as const).map(async (role) => ({ mode, role, elements: (await this.deps.nft.list('set', `pool_${role}_${mode}`)) ?? [] })),
      ),
    );
    const result = new Map<string, Map<string, { created: number; ended: number }>>();
    for (const pool of pools) {
      const classid = poolClassid(pool.id);
      const byValue = new Map(pool.backends.map((b) => [valueOf(pool, b, this.config.facts.backendMacs), b.name]));
      const counts = new Map<string, { created: number; ended: number }>();
      for (const { mode, role, elements } of listed) {
        if (mode !== pool.mode) continue;
        for (const e of elements.filter((x: NftListedElement) => x.key[0] === classid)) {
          const name = byValue.get(normalizeValue(e.key[1]));
          if (!name) continue;
          const c = counts.get(name) ?? { created: 0, ended: 0 };
          if (role === 'new') c.created = e.packets ?? 0;
          else c.ended = e.packets ?? 0;
          counts.set(name, c);
        }
      }
      result.set(poolName(pool.id), counts);
    }
    return result;
  }

  /** The state file the agent and `tula-dsr stats` read. */
  writeState(): void {
    const now = Math.floor(this.deps.now() / 1000);
    const state: RuntimeState = {
      version: 1,
      config: this.configHash,
      pid: process.pid,
      startedAt: this.startedAt,
      updatedAt: now,
      checks: [],
      pools: this.pools
        .filter((p) => p.managed)
        .map((p) => {
          const id = poolName(p.id);
          const down = p.backends.filter((b) => this.down.get(id)?.has(b.name)).map((b) => b.ip);
          return { id, vips: [...p.vips], down, failOpen: this.failOpen.has(id), changedAt: this.changedAt.get(id) ?? this.startedAt };
        }),
      active: Object.fromEntries([...this.lc].map(([id, s]) => [id, Object.fromEntries(s.active())])),
    };
    writeFileAtomic(this.deps.statePath, JSON.stringify(state, null, 2) + '\n', 0o600);
  }
}

function valueOf(pool: Pool, b: BackendSpec, macs: Readonly<Record<string, string>>): string {
  if (pool.mode === 'l2') return (b.mac ?? macs[b.ip] ?? '').toLowerCase();
  return `0x${b.ip
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join('')}`;
}

const normalizeValue = (v: string) => (/^\d+$/.test(v) ? `0x${Number(v).toString(16).padStart(8, '0')}` : v.toLowerCase());

/** The backends (by name) an earlier run had found down, by pool, from its state file (which lists addresses). */
function downFromState(state: RuntimeState, pools: readonly Pool[]): DownView {
  const byId = new Map(pools.map((p) => [poolName(p.id), p]));
  return new Map(
    state.pools
      .filter((p) => byId.has(p.id))
      .map((p) => [
        p.id,
        new Set(
          byId
            .get(p.id)!
            .backends.filter((b) => p.down.includes(b.ip))
            .map((b) => b.name),
        ),
      ]),
  );
}
