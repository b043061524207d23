/**
 * The balancer runtime's CPU as shipped: the bundled runtime (dist/runtime/tula-dsr-runtime.js) runs inside the lab's
 * balancer with the configuration the agent would install, probing the lab's real backends through the VIP. Its CPU
 * time comes from /proc/<pid>/stat before and after a steady window: its own (utime + stime) and that of the
 * commands it ran and reaped in the window (cutime + cstime: nft, flock, …), which are its cost too.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseRuntimeConfig, parseRuntimeState, probeTargets, RuntimeState } from '../model';
import { execOk, waitFor } from '../lab/exec';
import type { L2Lab } from '../lab/l2/lab';

const REPO = resolve(__dirname, '..', '..');
const BUNDLE = join(REPO, 'dist', 'runtime', 'tula-dsr-runtime.js');

export interface CpuReport {
  readonly seconds: number;
  /** Own and children's CPU time over the window, in % of one core. */
  readonly totalPercent: number;
  readonly ownPercent: number;
  readonly childrenPercent: number;
  /** Resident memory at the end of the window, and its peak since the start (MB). */
  readonly rssMb: number;
  readonly peakRssMb: number;
  /** Probes the backends served during the window (each logs its requests). */
  readonly probes: number;
}

interface CpuTicks {
  readonly own: number;
  readonly children: number;
}

/** utime + stime and cutime + cstime, in clock ticks (fields 14–17 of /proc/<pid>/stat). */
function readTicks(pid: number): CpuTicks {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // the command name (field 2) may hold spaces: count the fields after its closing parenthesis
  const fields = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  return { own: fields[11] + fields[12], children: fields[13] + fields[14] };
}

function readMemoryMb(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** Requests for the check's path from the balancer that each backend logged so far (lab/l2/scripts.ts: `REQ …`). */
function probesServed(l2: L2Lab, path: string): number {
  const mark = new RegExp(`^REQ \\d+ 80 ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} ${l2.lb.ip.replace(/\./g, '\\.')}:`, 'gm');
  return Object.values(l2.servers).reduce((n, s) => n + (s.stdoutText().match(mark)?.length ?? 0), 0);
}

function readState(l2: L2Lab, path: string): RuntimeState | null {
  try {
    return parseRuntimeState(readFileSync(l2.lb.path(path), 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Starts the bundled runtime on `configPath` (a file in the balancer's /tmp), waits until it has probed every target
 * and found it up, lets it settle for `settleMs`, then measures `seconds`; stops it (SIGTERM) whatever happens.
 */
export async function measureRuntimeCpu(
  l2: L2Lab,
  configPath: string,
  check: { readonly path: string; readonly intervalSec: number },
  seconds: number,
  settleMs = 5000,
): Promise<CpuReport> {
  const statePath = '/tmp/runtime-state.json';
  const clockTicks = Number((await execOk(['getconf', 'CLK_TCK'])).stdout.trim());
  const runtime = l2.lb.spawn(['node', BUNDLE, configPath, statePath]);
  try {
    // nsenter and setpriv exec the program (no fork): the PID becomes the runtime's own
    const comm = () => (runtime.isRunning() ? readFileSync(`/proc/${runtime.pid}/comm`, 'utf8').trim() : 'gone');
    if (!(await waitFor(() => comm() === 'node', 5000, 10))) throw new Error(`runtime bench: PID ${runtime.pid} is ${comm()}, not the runtime's node`);
    const targets = probeTargets(parseRuntimeConfig(readFileSync(l2.lb.path(configPath), 'utf8')).balancer).length;
    const ready = await waitFor(
      () => {
        const state = readState(l2, statePath);
        return (
          !runtime.isRunning() || (!!state && state.checks.length === targets && state.checks.every((c) => c.lastProbeAt !== undefined && c.state === 'up'))
        );
      },
      30_000,
      200,
    );
    if (!ready || !runtime.isRunning()) {
      throw new Error(`runtime bench: the runtime did not probe every backend up within 30 s; its log:\n${runtime.stderrText().slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, settleMs));
    const probes0 = probesServed(l2, check.path);
    const before = readTicks(runtime.pid);
    const started = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const after = readTicks(runtime.pid);
    const wall = Number(process.hrtime.bigint() - started) / 1e9;
    const memory = readMemoryMb(runtime.pid);
    const probes = probesServed(l2, check.path) - probes0;
    const state = readState(l2, statePath);
    if (!runtime.isRunning() || !state || state.checks.some((c) => c.state !== 'up')) {
      throw new Error(`runtime bench: the runtime stopped or found a backend down during the window; its log:\n${runtime.stderrText().slice(-3000)}`);
    }
    // intervals are shortened by up to 10% (jitter), never lengthened; a tenth below the nominal count leaves room for
    // the window's edges: fewer probes mean the runtime did not do the work it is measured for
    const due = Math.floor((0.9 * targets * seconds) / check.intervalSec);
    if (probes < due)
      throw new Error(
        `runtime bench: the backends served ${probes} probes in ${seconds} s, not the ${due} due; its log:\n${runtime.stderrText().slice(-3000)}`,
      );
    const percent = (ticks: number) => (ticks / clockTicks / wall) * 100;
    return {
      seconds: wall,
      totalPercent: percent(after.own - before.own + after.children - before.children),
      ownPercent: percent(after.own - before.own),
      childrenPercent: percent(after.children - before.children),
      rssMb: memory.rss,
      peakRssMb: memory.peak,
      probes,
    };
  } finally {
    await runtime.stop('SIGTERM', 5000);
  }
}
