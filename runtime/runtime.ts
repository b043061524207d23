import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  BackendSpec,
  BalancerSpec,
  FlowCopyState,
  LEAST_CONNECTIONS,
  Pool,
  PoolPolicy,
  ProbeRouting,
  ProbeTarget,
  RuntimeConfig,
  RuntimeState,
  VipSpec,
  assignProbePorts,
  backendTargetKeys,
  configuredWeight,
  groupPools,
  managedSlotCount,
  parseRuntimeConfig,
  parseRuntimeState,
  poolClassid,
  poolName,
  probeTargets,
  renderProbeRouting,
} from '../model';
import { HealthMonitor, HealthMonitorOptions, SavedHealth, Transition } from './health-monitor';
import { LeastConnectionsPool } from './least-connections';
import type { Logger } from './log';
import { NftListedElement, NftRunner, runCommand } from './nft';
import { PoolSync } from './pool-sync';
import { CommandRunner, installProbeRouting, removeProbeRouting } from './probe-routing';
import { writeFileAtomic } from './files';

/** What the runtime needs from the outside world, so that tests can drive it on a real table without a clock. */
export interface RuntimeDeps {
  readonly nft: NftRunner;
  readonly log: Logger;
  readonly now: () => number;
  readonly statePath: string;
  readonly readFile?: (path: string) => string;
  /** Runs `ip` and `nft` for the probe routing. @default runCommand */
  readonly run?: CommandRunner;
  /** @default runProbe (real sockets) */
  readonly probe?: HealthMonitorOptions['probe'];
}

/** How often least connections recounts its pools' open flows, at most (see countOpenFlows). */
const OPEN_FLOWS_CORRECTION_MS = 30_000;

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
  private lastCorrection = 0;
  private correctionEveryMs = OPEN_FLOWS_CORRECTION_MS;
  private vips = new Map<string, VipSpec>();
  private targets: ProbeTarget[] = [];
  private ports = new Map<string, number>();
  private monitor: HealthMonitor | null = null;
  /** The probe routing this process installed: a reload updates it in place (see installProbeRouting). */
  private probeRouting: ProbeRouting | undefined;
  /** Pool updates run one after another: health, least connections and reloads all rewrite the same maps. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly configPath: string,
    private readonly deps: RuntimeDeps,
  ) {
    this.sync = new PoolSync(deps.nft);
    this.startedAt = Math.floor(deps.now() / 1000);
  }

  /** Reads the configuration (first start, or SIGHUP after the agent installed a new one or reloaded the table). */
  load(): void {
    const text = this.read(this.configPath);
    if (text === null) throw new Error(`cannot read the runtime configuration ${this.configPath}`);
    this.config = parseRuntimeConfig(text);
    this.configHash = createHash('sha256').update(text).digest('hex');
    this.pools = groupPools(this.config.balancer.vips);
    this.vips = new Map(this.config.balancer.vips.map((v) => [v.name, v]));
    this.targets = probeTargets(this.config.balancer);
    this.ports = assignProbePorts(this.targets);
    for (const id of [...this.lc.keys()]) if (!this.pools.some((p) => poolName(p.id) === id)) this.lc.delete(id);
    // the agent may have reloaded the table: the next sync reads what the kernel holds
    this.sync.invalidate();
  }

  private read(path: string): string | null {
    try {
      return (this.deps.readFile ?? ((p) => readFileSync(p, 'utf8')))(path);
    } catch {
      return null;
    }
  }

  /** The configuration the agent installed, as last loaded. */
  get configuration(): RuntimeConfig {
    return this.config;
  }

  get spec(): BalancerSpec {
    return this.config.balancer;
  }

  /** The configuration's slot pools, grouped once per load (grouping 10,000 VIPs takes about 0.2 s). */
  get poolGroups(): readonly Pool[] {
    return this.pools;
  }

  /**
   * Applies the configuration: probe routing for its targets, the health monitor (targets that stay keep their
   * health; at a first start, what the state file says an earlier run had found), and the pools' slots.
   */
  async start(): Promise<void> {
    const run = this.deps.run ?? runCommand;
    const installed = this.probeRouting;
    // forgotten until it is in place: after a failure, the next start installs from scratch
    this.probeRouting = undefined;
    if (this.targets.length) {
      const routing = renderProbeRouting(this.config.balancer, this.targets, this.ports);
      await installProbeRouting(routing, run, installed);
      this.probeRouting = routing;
    } else await removeProbeRouting(run);
    const saved = savedHealth(parseRuntimeState(this.read(this.deps.statePath) ?? undefined));
    if (!this.monitor) {
      this.monitor = new HealthMonitor({
        route: (target) => ({ host: target.backend.ip, port: target.check.port, localPort: this.ports.get(target.key) }),
        ...(this.deps.probe && { probe: this.deps.probe }),
      });
      this.monitor.onTransition((t) => this.onTransition(t));
      this.monitor.start(this.targets, saved);
    } else this.monitor.replace(this.targets, saved);
    this.down = this.downFromMonitor();
    await this.apply('start');
  }

  /** Stops probing and removes the probe routing (SIGTERM). */
  async stop(): Promise<void> {
    await this.monitor?.stop();
    this.monitor = null;
    this.probeRouting = undefined;
    await removeProbeRouting(this.deps.run ?? runCommand);
  }

  private onTransition(t: Transition): void {
    this.deps.log(
      t.health === 'down' ? 'warn' : 'info',
      `backend ${t.target.backend.ip} ${t.health}: ${t.reason} (${t.key.slice(t.target.backend.ip.length + 1)}; VIPs ${t.target.vips.join(', ')})`,
    );
    this.down = this.downFromMonitor();
    this.apply('health').catch((error: Error) => this.deps.log('error', `health: ${error.message}`));
  }

  /** Which backends of each managed pool failed their checks, from the monitor's view. */
  private downFromMonitor(): DownView {
    const health = new Map((this.monitor?.status() ?? []).map((s) => [s.key, s.health]));
    const view = new Map<string, Set<string>>();
    for (const pool of this.pools.filter((p) => p.managed)) {
      const keys = backendTargetKeys(this.vips.get(pool.vips[0])!);
      const down = new Set(pool.backends.filter((_, i) => keys[i] !== null && health.get(keys[i]!) === 'down').map((b) => b.name));
      if (down.size) view.set(poolName(pool.id), down);
    }
    return view;
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

  /** One least-connections round: fold in the counters, re-weight, apply. */
  async leastConnectionsRound(): Promise<void> {
    const lcPools = this.pools.filter((p) => LEAST_CONNECTIONS.includes(p.algorithm));
    if (!lcPools.length) return;
    const counters = await this.readFlowCounters(lcPools);
    const now = this.deps.now();
    const open = now - this.lastCorrection >= this.correctionEveryMs ? await this.countOpenFlows(lcPools) : null;
    // the counters again once the open flows are listed: they bound what the listing could have seen (see correct)
    const afterListing = open ? await this.readFlowCounters(lcPools) : null;
    if (open) {
      // at most 1% of a core on it: listing 100,000 open flows took 2.9 s on the build machine
      this.correctionEveryMs = Math.max(OPEN_FLOWS_CORRECTION_MS, 100 * (this.deps.now() - now));
      this.lastCorrection = now;
    }
    for (const pool of lcPools) {
      const id = poolName(pool.id);
      const state = this.lc.get(id) ?? new LeastConnectionsPool();
      this.lc.set(id, state);
      state.sample(counters.get(id) ?? new Map(), now);
      if (open && afterListing) state.correct(open.get(id) ?? new Map(), afterListing.get(id) ?? new Map());
      const backends = pool.backends.map((b) => ({ name: b.name, weight: this.takes(b, pool) ? configuredWeight(b, pool) : 0 }));
      this.lcWeights.set(id, state.weights(backends, managedSlotCount(pool)));
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

  /** Queued behind any update still running. */
  private apply(why: string): Promise<void> {
    const next = this.queue.then(() => this.applyNow(why));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async applyNow(why: string): Promise<void> {
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
    const result = await this.sync.sync(this.config.balancer, this.config.facts, this.policy(), this.pools);
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

  /**
   * Open flows per (pool, backend name), counted in the open-flow maps: a flow that ended without the client's FIN
   * or RST (a vanished client, a server's reset) is still counted active until its entry expires; this count drops
   * such flows from the estimate. A flow's pool is its VIP's, found by (address, port) or (address, '*').
   */
  private async countOpenFlows(pools: readonly Pool[]): Promise<Map<string, Map<string, number>>> {
    const result = new Map<string, Map<string, number>>(pools.map((p) => [poolName(p.id), new Map()]));
    const byVip = new Map<string, { id: string; byValue: Map<string, string> }>();
    for (const pool of pools) {
      const entry = { id: poolName(pool.id), byValue: new Map(pool.backends.map((b) => [valueOf(pool, b, this.config.facts.backendMacs), b.name])) };
      for (const name of pool.vips) {
        const vip = this.vips.get(name)!;
        byVip.set(`${vip.ip} ${vip.port}`, entry);
      }
    }
    for (const mode of new Set(pools.map((p) => p.mode))) {
      for (const e of (await this.deps.nft.list('map', `flows_${mode}_tcp`)) ?? []) {
        const [, , daddr, dport] = e.key;
        const entry = byVip.get(`${daddr} ${dport}`) ?? byVip.get(`${daddr} *`);
        const name = entry?.byValue.get(normalizeValue(e.value ?? ''));
        if (!entry || !name) continue;
        const counts = result.get(entry.id)!;
        counts.set(name, (counts.get(name) ?? 0) + 1);
      }
    }
    return result;
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
    writeFileAtomic(this.deps.statePath, JSON.stringify(this.state(), null, 2) + '\n', 0o600);
  }

  /** The runtime's view now: what the state file records, and the statistics textfile shows. */
  state(): RuntimeState {
    const now = Math.floor(this.deps.now() / 1000);
    const flowCopy = this.flowCopyStatus();
    return {
      version: 1,
      config: this.configHash,
      pid: process.pid,
      startedAt: this.startedAt,
      updatedAt: now,
      checks: (this.monitor?.status() ?? []).map((c) => ({
        backend: c.target.backend.ip,
        check: c.key.slice(c.target.backend.ip.length + 1),
        kind: c.target.check.kind,
        vip: c.target.via.name,
        state: c.health,
        since: Math.floor(c.since / 1000),
        ...(c.lastProbeAt !== undefined && { lastProbeAt: Math.floor(c.lastProbeAt / 1000) }),
        ...(c.lastResult && !c.lastResult.ok && c.lastResult.error !== undefined && { lastError: c.lastResult.error }),
        probes: c.probes,
        failures: c.failures,
      })),
      pools: this.pools
        .filter((p) => p.managed)
        .map((p) => {
          const id = poolName(p.id);
          const down = p.backends.filter((b) => this.down.get(id)?.has(b.name)).map((b) => b.ip);
          return { id, vips: [...p.vips], down, failOpen: this.failOpen.has(id), changedAt: this.changedAt.get(id) ?? this.startedAt };
        }),
      active: Object.fromEntries([...this.lc].map(([id, s]) => [id, Object.fromEntries(s.active())])),
      ...(flowCopy && { flowCopy }),
    };
  }

  /** What a pair member's flow copy reports for the state file (set by main, which runs the copy). */
  flowCopyStatus: () => FlowCopyState | undefined = () => undefined;
}

function valueOf(pool: Pool, b: BackendSpec, macs: Readonly<Record<string, string>>): string {
  if (pool.mode === 'l2') return (b.mac ?? macs[b.ip] ?? '').toLowerCase();
  return `0x${b.ip
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join('')}`;
}

const normalizeValue = (v: string) => (/^\d+$/.test(v) ? `0x${Number(v).toString(16).padStart(8, '0')}` : v.toLowerCase());

/** What an earlier run had found, by target key (the state file's `since` is in seconds, the monitor's in ms). */
function savedHealth(state: RuntimeState | null): Map<string, SavedHealth> {
  return new Map((state?.checks ?? []).map((c) => [`${c.backend} ${c.check}`, { health: c.state, since: c.since * 1000 }]));
}
