/**
 * The convergence bench counts the lab hosts' CPU with a cgroup around their sshds (bench/cgroup-cpu.ts), because an
 * sshd's reaped children miss a session whose shell outlives it. A real cgroup, real processes: it needs root.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CGROUP_ROOTS, CgroupCpu, cgroupCpu, reapStaleGroups } from '../../bench/cgroup-cpu';
import { cpuTotal } from '../../bench/cpu';

const BURN = 'const u=()=>{const c=process.cpuUsage();return (c.user+c.system)/1000};while(u()<300);';

test('GIVEN a process in the group that leaves an orphan burning CPU WHEN read THEN the orphan is counted, the group settles once it is gone, and is removed', async () => {
  if (process.getuid?.() !== 0) throw new Error('this test needs root: it makes a cgroup');
  // sh starts node in the background and exits at once: node is reparented away from sh, as an agent session's shell is
  const parent = spawn('sh', ['-c', `read go; node -e "${BURN}" & exit 0`], { stdio: ['pipe', 'ignore', 'ignore'] });
  const keeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  let group: CgroupCpu | undefined;
  try {
    const made = cgroupCpu(`tula-test-${process.pid}`, [parent.pid!, keeper.pid!]);
    if ('problem' in made) throw new Error(`this test needs a cgroup with CPU accounting that root may write to: ${made.problem}`);
    group = made;
    const before = cpuTotal(group.read());
    parent.stdin.write('go\n');
    await new Promise((resolve) => parent.on('exit', resolve));
    const started = Date.now();
    await group.settled([keeper.pid!], 10_000);
    // node ran for 300 ms of CPU after sh had exited: settling waited for it, and its CPU is the group's
    expect(Date.now() - started).toBeGreaterThan(100);
    expect(cpuTotal(group.read()) - before).toBeGreaterThanOrEqual(290);
  } finally {
    keeper.kill('SIGKILL');
    await new Promise((resolve) => (keeper.exitCode !== null || keeper.signalCode !== null ? resolve(null) : keeper.on('exit', resolve)));
    parent.kill('SIGKILL');
    group?.remove();
  }
  for (const root of CGROUP_ROOTS) expect(existsSync(`${root}/tula-test-${process.pid}`)).toBe(false);
});

test('GIVEN a group left by a process that is gone and one of a live process WHEN stale groups are reaped THEN only the first is removed', () => {
  if (process.getuid?.() !== 0) throw new Error('this test needs root: it makes cgroups');
  const prefix = `tula-test-stale-${process.pid}-`;
  const gone = spawnSync('true').pid;
  const left = cgroupCpu(`${prefix}${gone}`, []);
  const live = cgroupCpu(`${prefix}${process.pid}`, []);
  try {
    if ('problem' in left || 'problem' in live) throw new Error('this test needs a cgroup with CPU accounting that root may write to');
    const reaped = reapStaleGroups(prefix);
    expect(reaped).toHaveLength(1);
    expect(reaped[0]).toMatch(new RegExp(`/${prefix}${gone}$`));
    expect(existsSync(reaped[0])).toBe(false);
    // the live process's group is still there, and a second pass finds nothing to reap
    expect(CGROUP_ROOTS.some((root) => existsSync(`${root}/${prefix}${process.pid}`))).toBe(true);
    expect(reapStaleGroups(prefix)).toEqual([]);
  } finally {
    for (const g of [left, live]) if ('remove' in g) g.remove();
  }
});
