import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * CPU time (user + system) of the processes a benchmark starts. Node gives no rusage for a child, so each command
 * runs under bash, which waits for it and then prints its children's times (`times`, millisecond resolution) on
 * a descriptor of its own: the command's output stays untouched, and bash's own CPU is not counted.
 */
export interface Cpu {
  readonly userMs: number;
  readonly systemMs: number;
}

export const NO_CPU: Cpu = { userMs: 0, systemMs: 0 };

export function addCpu(a: Cpu, b: Cpu): Cpu {
  return { userMs: a.userMs + b.userMs, systemMs: a.systemMs + b.systemMs };
}

export function cpuTotal(c: Cpu): number {
  return c.userMs + c.systemMs;
}

/** `times` prints the shell's line, then its children's: `0m1.234s 0m0.056s`. */
export function parseBashTimes(text: string): Cpu {
  const lines = text.trim().split('\n');
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines[lines.length - 1]?.trim() ?? '');
  if (!m) throw new Error(`cannot read bash times from ${JSON.stringify(text)}`);
  return { userMs: (Number(m[1]) * 60 + Number(m[2])) * 1000, systemMs: (Number(m[3]) * 60 + Number(m[4])) * 1000 };
}

/** Runs `argv` (stdout and stderr together in `out`) and measures the CPU it and every process it waited for used. */
export function runCounted(argv: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; out: string; cpu: Cpu }> {
  return new Promise((done, fail) => {
    const child = spawn('bash', ['-c', '"$@"; rc=$?; times >&3; exit $rc', 'bash', ...argv], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let times = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr?.on('data', (d) => (out += d));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (d) => (times += d));
    child.on('error', fail);
    child.on('close', (code) => {
      try {
        done({ code: code ?? 1, out, cpu: parseBashTimes(times) });
      } catch (error) {
        fail(error);
      }
    });
  });
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** CPU used so far by the agent daemons serving from `dir` (by pid, since a daemon is not a child of ours). */
export function daemonCpu(dir: string): Map<number, Cpu> {
  const found = new Map<number, Cpu>();
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.sock.pid'));
  } catch {
    return found;
  }
  for (const name of names) {
    try {
      const pid = Number(readFileSync(join(dir, name), 'utf8').trim());
      // fields after the command name (which may hold spaces): utime and stime are the 12th and 13th
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      found.set(pid, { userMs: Number(fields[11]) * TICK_MS, systemMs: Number(fields[12]) * TICK_MS });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** What the daemons used between two readings (a daemon started meanwhile counts from zero). */
export function daemonCpuSince(before: Map<number, Cpu>, after: Map<number, Cpu>): Cpu {
  let sum = NO_CPU;
  for (const [pid, now] of after) {
    const was = before.get(pid) ?? NO_CPU;
    sum = addCpu(sum, { userMs: now.userMs - was.userMs, systemMs: now.systemMs - was.systemMs });
  }
  return sum;
}
