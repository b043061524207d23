/**
 * The prerequisites of a balancer pair member, on a real lab host with the real keepalived: a host without
 * keepalived fails with the package to install and is left as it was; a configuration that `keepalived -t` refuses
 * is never loaded, and a member that already runs keeps its previous configuration, its keepalived and its VIP.
 *
 * keepalived's refusal comes from keepalived itself: with `enable_script_security` it will not run a track script
 * from a directory that others may write to, which is a real mistake on a host (a world-writable
 * /usr/local/lib/tula-dsr). Needs root and keepalived; without them the tests fail (none is skipped).
 */
import { createLab, Lab, LabHost } from '../../lab/topology';
import { KEEPALIVED_CHECK_SCRIPT, KEEPALIVED_CONFIG_FILE, KEEPALIVED_PID_FILES } from '../../model';
import { TASK_LINE, addresses, balancerSpec, leftovers, run, sh, snapshot, unusedIp } from './helpers';
import type { HostRunResult } from '../../agent/runner';

jest.setTimeout(60_000);

const VIP = '10.99.2.30';
const SCRIPT_DIR = KEEPALIVED_CHECK_SCRIPT.replace(/\/[^/]+$/, '');

let lab: Lab;
let lb: LabHost;
let be1: LabHost;

beforeAll(async () => {
  lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }] });
  ({ lb, be1 } = lab.hosts);
});

afterAll(async () => {
  await lab?.teardown();
});

/** The primary's spec of a pair whose peer is an unused address (these tests need one member only). */
function memberSpec(advertIntervalSec: number): Record<string, unknown> {
  const pair = {
    path: 'lab/edge',
    name: 'edge',
    role: 'primary',
    peerAddress: unusedIp(lab, 201),
    peerName: 'lb2',
    virtualRouterId: 42,
    priority: 150,
    advertIntervalSec,
    preempt: true,
    flowCopyPort: 7407,
    // the peer is absent: its runtime's flow copy only retries; the pin is the lab's other host's key
    peerSsh: { host: unusedIp(lab, 201), port: 22, hostKey: be1.hostKeyFingerprint },
  };
  return balancerSpec(lab, lb, [{ name: 'web', ip: VIP, backends: [{ name: 'be1', ip: be1.ip }] }], { pair });
}

const failedTasks = (r: HostRunResult) => r.tasks.filter((t) => t.status === 'failed');

describe('a pair member whose keepalived is missing or refuses its configuration', () => {
  test('GIVEN no keepalived on the host WHEN apply runs THEN it fails naming the package, and the host is unchanged', async () => {
    // Only this host's mount namespace loses the program: an unexecutable file over it, as if never installed.
    const program = (await sh(lb, 'command -v keepalived')).trim();
    await sh(lb, `mount --bind /dev/null ${program}`);
    try {
      const before = await snapshot(lb);
      const result = await run(memberSpec(0.2), 'apply');

      expect(result.error?.kind).toBe('task-failed');
      expect(failedTasks(result).map((t) => `${t.name}: ${t.detail}`)).toEqual([
        "keepalived: is not installed on lb; a member of a balancer pair needs keepalived 2.x for VRRP: install the distribution's package (apt-get install keepalived)",
      ]);
      expect(await snapshot(lb)).toEqual(before);
    } finally {
      await sh(lb, `umount ${program}`);
    }
  });

  test('GIVEN a world-writable track script directory WHEN apply runs THEN keepalived -t refuses the file, nothing is loaded, and the host is as before', async () => {
    await sh(lb, `mkdir -p ${SCRIPT_DIR} && chmod 0777 ${SCRIPT_DIR}`);
    const before = await snapshot(lb);

    const result = await run(memberSpec(0.2), 'apply');

    expect(result.error?.message).toMatch(/every change of this run was rolled back$/);
    const failed = failedTasks(result);
    expect(failed.map((t) => t.name)).toEqual([`keepalived configuration ${KEEPALIVED_CONFIG_FILE}`]);
    expect(failed[0]!.detail).toContain('keepalived -t refused the configuration:');
    expect(failed[0]!.detail).toContain('insecure');
    expect(await snapshot(lb)).toEqual(before);
    expect(await sh(lb, `test -e ${KEEPALIVED_PID_FILES.main} && echo running || echo none`)).toBe('none\n');
    expect(await leftovers(lb)).toEqual([]);
  });

  test('GIVEN a running member WHEN a new configuration is refused THEN the previous file stays loaded, keepalived keeps running and the VIP stays', async () => {
    await sh(lb, `chmod 0755 ${SCRIPT_DIR}`);
    const first = await run(memberSpec(0.2), 'apply');
    expect(failedTasks(first)).toEqual([]);
    const pid = (await sh(lb, `cat ${KEEPALIVED_PID_FILES.main}`)).trim();
    const config = await sh(lb, `cat ${KEEPALIVED_CONFIG_FILE}`);
    // the only member: it becomes MASTER after about three advertisement intervals
    await waitForVip();

    await sh(lb, `chmod 0777 ${SCRIPT_DIR}`);
    const refused = await run(memberSpec(0.5), 'apply');

    expect(TASK_LINE(refused)).toContain(`failed: keepalived configuration ${KEEPALIVED_CONFIG_FILE}`);
    expect(await sh(lb, `cat ${KEEPALIVED_CONFIG_FILE}`)).toBe(config);
    expect((await sh(lb, `cat ${KEEPALIVED_PID_FILES.main}`)).trim()).toBe(pid);
    expect(await sh(lb, `kill -0 ${pid} && echo alive`)).toBe('alive\n');
    expect(await addresses(lb, 'eth0')).toContain(`${VIP}/32`);
    expect(await leftovers(lb)).toEqual([]);

    await sh(lb, `chmod 0755 ${SCRIPT_DIR}`);
    const removed = await run(memberSpec(0.2), 'remove');
    expect(failedTasks(removed)).toEqual([]);
  });
});

async function waitForVip(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await addresses(lb, 'eth0')).includes(`${VIP}/32`)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`keepalived did not put ${VIP} on lb's eth0 within 10 s`);
}
