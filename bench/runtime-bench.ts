/**
 * The balancer runtime at scale, on the L2 namespace lab with four backends (one lab for every case, torn down at the
 * end whatever happens; see runtime-lab.ts):
 *
 *  - health change → data plane updated (health-flip.ts, run inside the balancer), for 10,000 VIPs in one pool and
 *    in 2,500 pools of 4, each with an empty flow map and with 100,000 open flows;
 *  - the shipped runtime's CPU and memory over a steady window (runtime-cpu.ts), 10,000 VIPs checked over HTTP every
 *    2 s by the real probes, with weighted round robin and with least connections (its 200 ms loop lists the
 *    counter sets).
 */
import { join, resolve } from 'node:path';
import { createL2Lab, L2Lab } from '../lab/l2/lab';
import { execFile } from '../lab/exec';
import { enterHostArgv } from '../lab/netns';
import type { FlipReport } from './health-flip';
import { CpuReport, measureRuntimeCpu } from './runtime-cpu';
import { PoolShape, RuntimeSpecOptions, fillFlows, loadTable, prepareBackends, runtimeSpec, writeRuntimeConfig } from './runtime-lab';
import { Stat, stat } from './stats';

const REPO = resolve(__dirname, '..', '..');
const FLIP_PROGRAM = join(REPO, 'dist', 'bench', 'health-flip.js');
/** The HTTP check of the CPU cases: the "checked every 2 s" (the defaults: timeout 1 s, fall 3, rise 2). */
const CPU_CHECK = { kind: 'http', path: '/name', intervalSec: 2 } as const;
/** The flip cases' check: the fastest interval and fall = rise = 1, so each flip is one probe (the probe is faked). */
const FLIP_CHECK = { kind: 'http', path: '/name', intervalSec: 0.2, fall: 1, rise: 1 } as const;

export interface FlipCase {
  readonly vips: number;
  readonly shape: PoolShape;
  readonly flows: number;
}

export interface FlipFigures extends FlipCase {
  readonly pools: number;
  readonly total: Stat & { readonly p95: number };
  readonly nft: Stat;
  /** Probe result → `nft -f` started: the runtime's own work (health view, render, diff). */
  readonly render: Stat;
  readonly elements: Stat;
  readonly bytes: Stat;
  readonly startMs: number;
}

export type CpuAlgorithm = RuntimeSpecOptions['algorithm'];

export interface RuntimeBenchResult {
  readonly vips: number;
  readonly flips: number;
  readonly flipCases: FlipFigures[];
  readonly cpu: Partial<Record<CpuAlgorithm, CpuReport>>;
}

export interface RuntimeBenchOptions {
  readonly vips: number;
  readonly flips: number;
  readonly flows: number;
  readonly cpuSeconds: number;
  readonly cpuAlgorithms: readonly CpuAlgorithm[];
  readonly log: (line: string) => void;
}

/** The 95th percentile (nearest rank). */
function p95(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)];
}

async function flipCase(l2: L2Lab, flips: number, c: FlipCase): Promise<FlipFigures> {
  const spec = runtimeSpec(l2, { vips: c.vips, shape: c.shape, algorithm: 'weighted-round-robin', healthCheck: FLIP_CHECK });
  await loadTable(l2, spec);
  if (c.flows) await fillFlows(l2, spec, c.flows);
  const config = writeRuntimeConfig(l2, spec);
  const argv = ['node', FLIP_PROGRAM, config, '/tmp/flip-state.json', String(flips), l2.backends[0].ip];
  const r = await execFile(enterHostArgv(l2.lb.anchorPid, argv), { timeoutMs: 300_000 });
  if (r.code !== 0)
    throw new Error(`runtime bench: health-flip (${c.vips} VIPs, ${c.shape}, ${c.flows} flows) exited ${r.code}: ${r.stderr.trim().slice(-3000)}`);
  const report = JSON.parse(r.stdout) as FlipReport;
  return {
    ...c,
    pools: report.pools,
    total: { ...stat(report.totalMs), p95: p95(report.totalMs) },
    nft: stat(report.nftMs),
    render: stat(report.totalMs.map((t, i) => t - report.nftMs[i])),
    elements: stat(report.elements),
    bytes: stat(report.bytes),
    startMs: report.startMs,
  };
}

/**
 * One VIP first: the same flip on the smallest table, side by side with 10,000 VIPs, shows what grows with the table.
 * Then one pool (the goal) and 2,500 pools, each without and with open flows.
 */
function flipCasesFor(o: Pick<RuntimeBenchOptions, 'vips' | 'flows'>): FlipCase[] {
  return [
    { vips: 1, shape: 'one-pool', flows: 0 },
    ...(['one-pool', 'many-pools'] as const).flatMap((shape) => [0, o.flows].map((flows) => ({ vips: o.vips, shape, flows }))),
  ];
}

export async function measureRuntime(o: RuntimeBenchOptions): Promise<RuntimeBenchResult> {
  const l2 = await createL2Lab({ backends: 4 });
  try {
    const figures: FlipFigures[] = [];
    for (const c of flipCasesFor(o)) {
      o.log(`runtime: ${o.flips} health flips, ${c.vips} VIPs as ${c.shape}, ${c.flows} open flows`);
      figures.push(await flipCase(l2, o.flips, c));
    }
    const cpu: Partial<Record<CpuAlgorithm, CpuReport>> = {};
    for (const algorithm of o.cpuAlgorithms) {
      o.log(`runtime: CPU of the bundled runtime, ${o.vips} VIPs (${algorithm}), HTTP check every ${CPU_CHECK.intervalSec} s, ${o.cpuSeconds} s`);
      const spec = runtimeSpec(l2, { vips: o.vips, shape: 'one-pool', algorithm, healthCheck: CPU_CHECK });
      await loadTable(l2, spec);
      await prepareBackends(l2, spec);
      cpu[algorithm] = await measureRuntimeCpu(l2, writeRuntimeConfig(l2, spec), CPU_CHECK, o.cpuSeconds);
    }
    return { vips: o.vips, flips: o.flips, flipCases: figures, cpu };
  } finally {
    await l2.teardown();
  }
}
