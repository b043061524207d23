/**
 * An apply interrupted in the middle, then re-runs converge. A step is made slow by bind-mounting a
 * wrapper over a tool inside the lab host's own mount namespace (no other host and not the machine sees it), so
 * the interruption lands between two known steps:
 *  - sshd killed (listener and session processes) while `sysctl -w …arp_announce` runs on a backend: the apply
 *    script ignores the lost connection and finishes on its own, so the original sysctl values are still the ones
 *    recorded and a re-run reports changed=0;
 *  - the apply script itself SIGKILLed while a large balancer ruleset waits to load: the live table is still the
 *    old one (never half), no temp file is left, and re-runs converge.
 */
import { createLab, Lab, LabHost } from '../../lab/topology';
import { spawnBackground, waitFor } from '../../lab/exec';
import { HostStateSchema } from '../../agent/state';
import { CLI, assertDistFresh, backendSpec, balancerSpec, leftovers, run, sh, writeSpec, addresses, expectNoStackTrace, VipInput } from './helpers';

jest.setTimeout(40_000);

let lab: Lab;

beforeAll(async () => {
  assertDistFresh();
  lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }, { name: 'be2' }] });
});

afterAll(async () => {
  await lab?.teardown();
});

/**
 * Replaces `tool` (e.g. /usr/sbin/sysctl) inside the host by a wrapper that, when its arguments match `when` (a
 * shell `case` pattern), writes its pid to /tmp/slow.pid and sleeps `seconds` before running the real tool.
 */
async function slowDown(host: LabHost, tool: string, when: string, seconds: number): Promise<void> {
  const name = tool.split('/').pop()!;
  await sh(
    host,
    [
      `cp ${tool} /tmp/${name}.real`,
      `cat > /tmp/${name}.slow <<'EOF'`,
      '#!/bin/sh',
      `case "$*" in ${when}) echo $$ > /tmp/slow.pid; sleep ${seconds};; esac`,
      `exec /tmp/${name}.real "$@"`,
      'EOF',
      `chmod 755 /tmp/${name}.slow`,
      `mount --bind /tmp/${name}.slow ${tool}`,
    ].join('\n'),
  );
}

/** Pids of the processes in the host (same pid namespace as ours), as `pid ppid comm` rows. */
async function processes(host: LabHost): Promise<{ pid: number; ppid: number; comm: string }[]> {
  return (await sh(host, 'ps -eo pid=,ppid=,comm='))
    .split('\n')
    .filter(Boolean)
    .map((l) => l.trim().split(/\s+/))
    .map(([pid, ppid, comm]) => ({ pid: Number(pid), ppid: Number(ppid), comm }));
}

function descendants(all: { pid: number; ppid: number }[], root: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => all.filter((x) => x.ppid === p).forEach((x) => (out.push(x.pid), walk(x.pid)));
  walk(root);
  return out;
}

/**
 * Starts `tula-dsr apply --spec file` and, once the slowed-down tool (see slowDown) waits, SIGKILLs the host's apply
 * script together with the tool and its children: nothing of the script runs after that, not even a trap.
 */
async function applyAndKillScript(host: LabHost, file: string) {
  const cli = spawnBackground(['node', CLI, 'apply', '--spec', file]);
  expect(await waitFor(async () => (await host.exec(['test', '-s', '/tmp/slow.pid'])).code === 0, 15_000, 20)).toBe(true);
  const wrapper = Number((await sh(host, 'cat /tmp/slow.pid')).trim());
  const all = await processes(host);
  // a step runs in a subshell of the apply script (which execs a lone command itself): the script is the outermost
  // sh above the wrapper
  const parentOf = (pid: number) => all.find((p) => p.pid === pid)!.ppid;
  const shells = [parentOf(wrapper)];
  expect(all.find((p) => p.pid === shells[0])?.comm).toBe('sh');
  while (all.find((p) => p.pid === parentOf(shells.at(-1)!))?.comm === 'sh') shells.push(parentOf(shells.at(-1)!));
  for (const pid of [...shells.reverse(), wrapper, ...descendants(all, wrapper)]) process.kill(pid, 'SIGKILL');
  return cli;
}

describe('an apply interrupted in the middle', () => {
  test('GIVEN sshd killed while a backend apply is between steps WHEN apply runs again THEN it reports changed=0 and the original sysctls are kept', async () => {
    const be = lab.hosts.be1;
    const file = writeSpec(lab, backendSpec(lab, be, [{ ip: '10.99.7.10' }]));
    await slowDown(be, '/usr/sbin/sysctl', '*-w*arp_announce*', 2);

    // WHEN sshd dies while step 2 (arp_announce) runs
    const cli = spawnBackground(['node', CLI, 'apply', '--spec', file]);
    expect(await waitFor(async () => (await be.exec(['test', '-s', '/tmp/slow.pid'])).code === 0, 15_000, 20)).toBe(true);
    const listener = Number((await sh(be, 'cat /run/sshd.pid')).trim());
    const all = await processes(be);
    const sessions = descendants(all, listener);
    const sshd = all.filter((p) => sessions.includes(p.pid) && p.comm === 'sshd').map((p) => p.pid);
    expect(sshd.length).toBeGreaterThan(0);
    await be.stopSshd();
    for (const pid of sshd) process.kill(pid, 'SIGKILL');
    const { code } = await cli.exited;

    // THEN the CLI reports the lost connection plainly
    expect(code).toBe(1);
    expect(cli.stdoutText()).toContain(
      `failed: be1 root@${be.ip}:22: connection closed by the server while the apply script ran; the host completes or rolls back that run by itself: run apply again to converge\n`,
    );
    expectNoStackTrace(cli.stdoutText() + cli.stderrText());

    // AND the orphaned apply script finishes on the host (it holds the lock until then)
    await sh(be, 'flock -w 10 /run/tula-dsr.lock true && umount /usr/sbin/sysctl');
    await be.startSshd();
    const rerun = await run(await readText(file), 'apply');
    expect(rerun.error).toBeUndefined();
    expect(rerun.counts.changed).toBe(0);
    expect((await run(await readText(file), 'apply')).counts.changed).toBe(0);
    // the values recorded as original are the host's real originals, not those of the interrupted run
    const state = HostStateSchema.parse(JSON.parse(await sh(be, 'cat /var/lib/tula-dsr/backend.json')));
    expect(state.originalSysctls).toEqual({ 'net.ipv4.conf.all.arp_ignore': '0', 'net.ipv4.conf.all.arp_announce': '0' });
    expect(await addresses(be, 'lo')).toEqual(['127.0.0.1/8', '10.99.7.10/32']);
    expect(await leftovers(be)).toEqual([]);
    // so remove really restores them
    expect((await run(await readText(file), 'remove')).error).toBeUndefined();
    expect(await sh(be, 'sysctl -n net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce')).toBe('0\n0\n');
  });

  test("GIVEN the apply script SIGKILLed on a fresh backend after arp_ignore changed WHEN apply runs again THEN the recorded originals are the host's, and remove restores them", async () => {
    const be = lab.hosts.be2;
    const sysctls = () => sh(be, 'sysctl -n net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce');
    expect(await sysctls()).toBe('0\n0\n');
    const text = JSON.stringify(backendSpec(lab, be, [{ ip: '10.99.7.20' }]));
    const file = writeSpec(lab, text);
    await slowDown(be, '/usr/sbin/sysctl', '*-w*arp_announce*', 5);

    // WHEN the apply script dies outright (no trap runs) after arp_ignore=1, before anything records it
    const cli = await applyAndKillScript(be, file);
    expect((await cli.exited).code).toBe(1);
    await sh(be, 'umount /usr/sbin/sysctl');
    expect(await sysctls()).toBe('1\n0\n');
    expect((await be.exec(['test', '-e', '/var/lib/tula-dsr/backend.json'])).code).not.toBe(0);
    expect(JSON.parse(await sh(be, 'cat /var/lib/tula-dsr/backend.json.journal')).originalSysctls).toEqual({
      'net.ipv4.conf.all.arp_ignore': '0',
      'net.ipv4.conf.all.arp_announce': '0',
    });

    // THEN a re-run records the host's real originals (from the journal, not the half-changed host) and drops it
    const rerun = await run(text, 'apply');
    expect(rerun.error).toBeUndefined();
    expect(rerun.tasks.find((t) => t.name.startsWith('state '))?.detail).toMatch(/with what an interrupted run had begun/);
    const state = HostStateSchema.parse(JSON.parse(await sh(be, 'cat /var/lib/tula-dsr/backend.json')));
    expect(state.originalSysctls).toEqual({ 'net.ipv4.conf.all.arp_ignore': '0', 'net.ipv4.conf.all.arp_announce': '0' });
    expect((await be.exec(['test', '-e', '/var/lib/tula-dsr/backend.json.journal'])).code).not.toBe(0);
    expect((await run(text, 'apply')).counts.changed).toBe(0);
    // AND remove puts them back
    expect((await run(text, 'remove')).error).toBeUndefined();
    expect(await sysctls()).toBe('0\n0\n');
    expect(await sh(be, 'ls -A /var/lib/tula-dsr 2>/dev/null || true')).toBe('');
  });

  test('GIVEN the apply script SIGKILLed while a 300-VIP ruleset waits to load WHEN re-run THEN the table was old (never half), and re-runs converge', async () => {
    const lb = lab.hosts.lb;
    const backends = [lab.hosts.be1, lab.hosts.be2].map((h) => ({ name: h.name, ip: h.ip }));
    const small: VipInput[] = [{ name: 'web', ip: '10.99.7.1', backends }];
    const large: VipInput[] = Array.from({ length: 300 }, (_, i) => ({ name: `v${i}`, ip: `10.99.8.${(i % 250) + 1}`, port: 1000 + i, backends }));
    expect((await run(balancerSpec(lab, lb, small), 'apply')).error).toBeUndefined();
    const oldTable = await sh(lb, 'nft -s list table netdev tula_dsr');
    const largeText = JSON.stringify(balancerSpec(lab, lb, large));
    const file = writeSpec(lab, largeText);
    await slowDown(lb, '/usr/sbin/nft', '"-f /var/lib/tula-dsr/netdev-tula_dsr.load.nft"', 5);

    // WHEN the apply script (and the waiting nft) are killed outright
    const cli = await applyAndKillScript(lb, file);
    const { code } = await cli.exited;
    await sh(lb, 'umount /usr/sbin/nft');

    // THEN the CLI says the script ended early; the live table is exactly the old one; no temp file is left
    expect(code).toBe(1);
    expect(cli.stdoutText()).toContain('failed: lb the apply script ended early (exit 137); run again to converge\n');
    expect(await sh(lb, 'nft -s list table netdev tula_dsr')).toBe(oldTable);
    expect((await leftovers(lb)).filter((f) => f.endsWith('.tula-tmp'))).toEqual([]);

    // AND a re-run converges, and the run after it changes nothing
    const rerun = await run(largeText, 'apply');
    expect(rerun.error).toBeUndefined();
    expect(rerun.tasks.filter((t) => t.status === 'changed').map((t) => t.name)).toContain('nft table netdev tula_dsr (300 VIPs)');
    const following = await run(largeText, 'apply');
    expect(following.error).toBeUndefined();
    expect(following.counts.changed).toBe(0);
    const table = await sh(lb, 'nft list map netdev tula_dsr vip_pool_port');
    expect(table.match(/ \. tcp \. \d+ : [0-9a-f]+:[0-9a-f]+/g)).toHaveLength(300);
    expect(await leftovers(lb)).toEqual([]);
  });
});

async function readText(path: string): Promise<string> {
  return (await import('node:fs/promises')).readFile(path, 'utf8');
}
