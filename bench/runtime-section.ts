/**
 * The `runtime` section of `npm run bench` (see runtime-bench.ts): its goal rows and its notes for BENCHMARKS.md.
 */
import { readFileSync } from 'node:fs';
import { CpuAlgorithm, FlipFigures, measureRuntime } from './runtime-bench';
import type { CpuReport } from './runtime-cpu';
import type { GoalRow } from './stats';

const VIPS = 10_000;
const FLOWS = 100_000;
const FLIP_GOAL_MS = 50;
const CPU_GOAL_PERCENT = 2;
const CPU_ALGORITHMS: readonly CpuAlgorithm[] = ['weighted-round-robin', 'least-connections'];

export interface SectionContext {
  readonly quick: boolean;
  readonly rows: GoalRow[];
  readonly notes: string[];
  readonly log: (line: string) => void;
}

const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const ms = (v: number) => `${v.toFixed(1)} ms`;
const count = (v: number) => v.toLocaleString('en');

function flipCaseName(f: FlipFigures): string {
  const pools = f.pools === 1 ? 'one pool' : `${count(f.pools)} pools`;
  return `${count(f.vips)} VIP${f.vips === 1 ? '' : 's'}, ${pools}, ${f.flows ? count(f.flows) : 'no'} open flows`;
}

function flipRow(f: FlipFigures): string {
  const size = f.bytes.median >= 10_000 ? `${(f.bytes.median / 1e6).toFixed(2)} MB` : `${f.bytes.median.toFixed(0)} bytes`;
  return `| ${flipCaseName(f)} | ${ms(f.total.median)} | ${ms(f.total.p95)} | ${f.total.min.toFixed(1)}–${f.total.max.toFixed(1)} | ${ms(f.nft.median)} | ${ms(f.render.median)} | ${count(f.elements.median)} (${size}) |`;
}

function cpuRow(algorithm: CpuAlgorithm, c: CpuReport): string {
  return `| ${algorithm} | ${c.totalPercent.toFixed(2)}% | ${c.ownPercent.toFixed(2)}% | ${c.childrenPercent.toFixed(2)}% | ${c.rssMb.toFixed(0)} / ${c.peakRssMb.toFixed(0)} MB | ${c.probes} |`;
}

export async function runtimeSection(context: SectionContext): Promise<void> {
  const { quick, rows, notes, log } = context;
  const flips = quick ? 6 : 20;
  const cpuSeconds = quick ? 10 : 60;
  const loadBefore = loadAverage();
  const r = await measureRuntime({ vips: VIPS, flips, flows: FLOWS, cpuSeconds, cpuAlgorithms: CPU_ALGORITHMS, log });
  const loadAfter = loadAverage();

  notes.push(
    `Health change → data plane updated (${flips} flips per case): the runtime's core (runtime/runtime.ts) inside the lab balancer's namespaces with its real nft, host lock and probe routing, on the whole table as a first apply loads it. The probe is a function the bench flips (check with fall = rise = 1), web1 down, up, down, …; each flip is timed from the probe result to \`nft -f\` exiting (committed), then checked in the kernel: web1 in no pool's slots or live set while down, in every pool's once up. ${count(VIPS / 4)} pools: 4 VIPs each, weights 1–8 per backend, so one flip rewrites every pool.`,
    '',
    '| case | median | p95 | min–max (ms) | of which `nft -f` (median) | runtime before `nft -f` (median) | elements (transaction) |',
    '|---|---|---|---|---|---|---|',
    ...r.flipCases.map(flipRow),
    '',
    `The runtime's CPU as shipped (\`node dist/runtime/tula-dsr-runtime.js CONFIG STATE\` in the lab balancer): ${count(VIPS)} VIPs on the lab's 4 backends, HTTP check every 2 s (timeout 1 s, fall 3, rise 2) through the VIP to the backends' real servers; CPU from /proc/<pid>/stat over ${cpuSeconds} s, after it found every backend up and settled 5 s: its own (utime + stime) and that of the commands it ran (cutime + cstime: nft, flock). Least connections re-weights every 200 ms (two \`nft -j list set\` per round); the lab keeps the state file, which the runtime fsyncs at each round, on tmpfs.`,
    '',
    '| algorithm | CPU, % of one core | own | commands | RSS end / peak | probes served |',
    '|---|---|---|---|---|---|',
    ...CPU_ALGORITHMS.flatMap((a) => (r.cpu[a] ? [cpuRow(a, r.cpu[a]!)] : [])),
    '',
    `Load average (1, 5, 15 min) of the machine before this section: ${loadBefore}; after: ${loadAfter}.`,
    '',
  );
  for (const f of r.flipCases.filter((x) => x.vips === VIPS && x.pools === 1)) {
    rows.push({
      section: 'runtime',
      goal: `health change → data plane updated, ${count(VIPS)} VIPs × 4 backends${f.flows ? `, ${count(f.flows)} open flows` : ''}: p95 ≤ ${FLIP_GOAL_MS} ms`,
      measured: `p95 ${ms(f.total.p95)}, median ${ms(f.total.median)} (n=${f.total.runs}; ${count(f.elements.median)} elements)`,
      pass: f.total.p95 <= FLIP_GOAL_MS,
    });
  }
  const wrr = r.cpu['weighted-round-robin']!;
  rows.push({
    section: 'runtime',
    goal: `CPU, ${count(VIPS)} VIPs × 4 backends checked every 2 s ≤ ${CPU_GOAL_PERCENT}% of one core`,
    measured: `${wrr.totalPercent.toFixed(2)}% over ${cpuSeconds} s (RSS ${wrr.rssMb.toFixed(0)} MB)`,
    pass: wrr.totalPercent <= CPU_GOAL_PERCENT,
  });
}
