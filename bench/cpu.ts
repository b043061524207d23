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
      // utime and stime are the 12th and 13th fields after the command name
      const fields = statFields(pid);
      if (fields) found.set(pid, { userMs: Number(fields[11]) * TICK_MS, systemMs: Number(fields[12]) * TICK_MS });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces), or null when the process is gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/**
 * CPU of every process that `pids` (the lab hosts' listening sshds) have reaped so far: cutime and cstime, the 14th
 * and 15th fields. An sshd forks one process per connection and waits for it, and that process waits for the session's
 * shell and its commands, so this is what the hosts spent serving SSH: key exchange, the shell and the scripts.
 */
export function reapedChildrenCpu(pids: readonly number[]): Cpu {
  let sum = NO_CPU;
  for (const pid of pids) {
    const fields = statFields(pid);
    if (fields) sum = addCpu(sum, { userMs: Number(fields[13]) * TICK_MS, systemMs: Number(fields[14]) * TICK_MS });
  }
  return sum;
}

/** Resolves once none of `pids` has a child left (a connection's sshd outlives its client by a moment), or after `maxMs`. */
export async function childrenReaped(pids: readonly number[], maxMs = 2000): Promise<void> {
  const parents = new Set(pids.map(String));
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    const busy = readdirSync('/proc').some((name) => /^\d+$/.test(name) && parents.has(statFields(Number(name))?.[1] ?? ''));
    if (!busy) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
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
