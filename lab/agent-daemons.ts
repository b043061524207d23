/**
 * Stopping the agent daemons that a lab, a test run or a benchmark started in a runtime folder of its own.
 * Lab, test and benchmark support only: users' daemons stop by themselves when idle, so the shipped agent
 * never needs this.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Alive and not a zombie (an exited daemon waits for init to reap it, which can take a while). */
export function processRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Sends `signal` to every agent daemon serving from `dir`; returns their PIDs. */
export function signalAgentDaemons(dir: string, signal: NodeJS.Signals = 'SIGTERM'): number[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.sock.pid'));
  } catch {
    return [];
  }
  const pids = names.map((n) => Number(readFileSync(join(dir, n), 'utf8').trim())).filter((pid) => Number.isInteger(pid) && pid > 1 && processRunning(pid));
  for (const pid of pids) process.kill(pid, signal);
  return pids;
}

/**
 * Stops every agent daemon serving from `dir` (SIGTERM, then SIGKILL after `waitMs`). For labs, tests and
 * benchmarks that give the daemon a folder of their own; users' daemons stop by themselves when idle.
 * Resolves to the number of daemons stopped.
 */
export async function stopAgentDaemons(dir: string, waitMs = 5_000): Promise<number> {
  const pids = signalAgentDaemons(dir);
  const deadline = Date.now() + waitMs;
  while (pids.some(processRunning) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  for (const pid of pids.filter(processRunning)) process.kill(pid, 'SIGKILL');
  return pids.length;
}
