import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cpu } from './cpu';

/**
 * CPU of a group of processes and of everything they start, orphans included, from a cgroup of the bench's own. The
 * lab hosts' sshds go in one: the CPU their sessions take is then counted whoever reaps them. An sshd's reaped
 * children (cutime) miss the agent's sessions, whose shell outlives its connection's sshd process and is reaped by
 * init: at 100 hosts they counted 23–31 ms per host where the cgroup counted 51–53 ms (the same runs, 2026-12-04).
 */
export interface CgroupCpu {
  /** CPU used so far by the group's processes and every process that was in it. */
  read(): Cpu;
  /** Resolves once the group holds only `pids` (sessions end a moment after their clients), or after `maxMs`. */
  settled(pids: readonly number[], maxMs?: number): Promise<void>;
  /** Removes the group; its processes must have exited (or moved) first. */
  remove(): void;
}

interface Hierarchy {
  readonly root: string;
  readonly read: (dir: string) => Cpu;
}

const usecLine = (text: string, key: string) => Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);

const V2_ROOTS = ['/sys/fs/cgroup', '/sys/fs/cgroup/unified'];
const V1_ROOTS = ['/sys/fs/cgroup/cpuacct', '/sys/fs/cgroup/cpu,cpuacct'];
/** Where a group may be made: cgroup v2 (alone, or beside v1 as `unified`), then v1's cpuacct. */
export const CGROUP_ROOTS: readonly string[] = [...V2_ROOTS, ...V1_ROOTS];

/** cgroup v2, then v1's cpuacct: the first this process can make a group in. */
const HIERARCHIES: readonly Hierarchy[] = [
  ...V2_ROOTS.map((root) => ({
    root,
    read: (dir: string) => {
      const stat = readFileSync(join(dir, 'cpu.stat'), 'utf8');
      return { userMs: usecLine(stat, 'user_usec') / 1000, systemMs: usecLine(stat, 'system_usec') / 1000 };
    },
  })),
  ...V1_ROOTS.map((root) => ({
    root,
    read: (dir: string) => ({
      userMs: Number(readFileSync(join(dir, 'cpuacct.usage_user'), 'utf8')) / 1e6,
      systemMs: Number(readFileSync(join(dir, 'cpuacct.usage_sys'), 'utf8')) / 1e6,
    }),
  })),
];

/**
 * Moves `pids` into a new cgroup named `name` and accounts for them, or says why it cannot (no cgroup hierarchy with
 * CPU accounting that this process may write to).
 */
export function cgroupCpu(name: string, pids: readonly number[]): CgroupCpu | { problem: string } {
  const tried: string[] = [];
  for (const h of HIERARCHIES) {
    const probe = h.root.endsWith('cpuacct') ? 'cpuacct.usage_user' : 'cgroup.controllers';
    if (!existsSync(join(h.root, probe))) continue;
    const dir = join(h.root, name);
    try {
      mkdirSync(dir);
      for (const pid of pids) writeFileSync(join(dir, 'cgroup.procs'), String(pid));
      const cpu = h.read(dir);
      if (!Number.isFinite(cpu.userMs) || !Number.isFinite(cpu.systemMs)) throw new Error('no CPU figures in it');
    } catch (error) {
      tried.push(`${h.root}: ${(error as Error).message}`);
      removeGroup(dir, h.root);
      continue;
    }
    return {
      read: () => h.read(dir),
      settled: async (keep, maxMs = 2000) => {
        const kept = new Set(keep.map(String));
        const deadline = Date.now() + maxMs;
        while (Date.now() < deadline) {
          const inside = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
          if (inside.every((pid) => kept.has(pid))) return;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      },
      remove: () => removeGroup(dir, h.root),
    };
  }
  return { problem: tried.length ? `cannot make a cgroup: ${tried.join('; ')}` : 'no cgroup hierarchy with CPU accounting is mounted' };
}

/** Moves whatever is left in `dir` back to the root group, then removes it. */
function removeGroup(dir: string, root: string): void {
  try {
    for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        writeFileSync(join(root, 'cgroup.procs'), pid);
      } catch {
        // exited meanwhile
      }
    }
    rmdirSync(dir);
  } catch {
    // never made, or already gone
  }
}

/**
 * Removes the groups named `prefix<pid>` that a process no longer alive left behind (a bench killed outright), after
 * moving back whatever they still hold. Returns their paths.
 */
export function reapStaleGroups(prefix: string): string[] {
  const reaped: string[] = [];
  for (const h of HIERARCHIES) {
    let names: string[];
    try {
      names = readdirSync(h.root).filter((n) => n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)));
    } catch {
      continue;
    }
    for (const name of names) {
      if (existsSync(`/proc/${name.slice(prefix.length)}`)) continue;
      removeGroup(join(h.root, name), h.root);
      if (!existsSync(join(h.root, name))) reaped.push(join(h.root, name));
    }
  }
  return reaped;
}
