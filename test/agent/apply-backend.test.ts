/**
 * `apply` on a backend host against a real sshd in a lab namespace (real kernel, iproute2, sysctl).
 * Cold apply changes the host; a second apply changes nothing at all, down to file ctimes; round trips are counted.
 */
import { createHash } from 'node:crypto';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { BACKEND_BOOT_SCRIPT, BACKEND_SYSCTL_FILE, BACKEND_UNIT_FILE, planBackendHost } from '../../model';
import { parseHostSpec } from '../../agent/spec-input';
import { HostStateSchema } from '../../agent/state';
import type { BackendHostSpec } from '../../model';
import { TASK_LINE, addresses, backendSpec, run, sh, snapshot, sysctl, leftovers } from './helpers';

jest.setTimeout(30_000);

const VIP_A = '10.99.1.10';
const VIP_B = '10.99.1.11';
const NOT_ENABLED = 'written, not enabled: systemd is not running on this host (run /etc/tula-dsr/*-up.sh from your init system)';

let lab: Lab;
let be: LabHost;
let specText: string;

beforeAll(async () => {
  lab = await createLab({ hosts: [{ name: 'be1' }] });
  be = lab.hosts.be1;
  specText = JSON.stringify(
    backendSpec(lab, be, [
      { ip: VIP_A, port: 80 },
      { ip: VIP_B, port: 443 },
      { ip: VIP_A, port: 8080 },
    ]),
  );
});

afterAll(async () => {
  await lab?.teardown();
});

describe('backend host apply (real sshd, real kernel)', () => {
  test('GIVEN a fresh host WHEN apply runs THEN the ARP sysctls, the VIPs on lo and the boot files are in place, in 2 round trips', async () => {
    // GIVEN a fresh host: ARP sysctls at the kernel defaults, no VIPs, no tula-dsr files
    expect(await sysctl(be, 'net.ipv4.conf.all.arp_ignore')).toBe('0');
    expect(await addresses(be, 'lo')).toEqual(['127.0.0.1/8']);

    // WHEN
    const result = await run(specText, 'apply');

    // THEN every task reports in order: ARP sysctls before any VIP appears on lo
    expect(result.error).toBeUndefined();
    expect(TASK_LINE(result)).toEqual([
      'changed: sysctl net.ipv4.conf.all.arp_ignore=1',
      'changed: sysctl net.ipv4.conf.all.arp_announce=2',
      `changed: address ${VIP_A}/32 dev lo`,
      `changed: address ${VIP_B}/32 dev lo`,
      `changed: file ${BACKEND_SYSCTL_FILE}`,
      `changed: file ${BACKEND_BOOT_SCRIPT}`,
      `changed: file ${BACKEND_UNIT_FILE}`,
      'ok: boot unit tula-dsr-backend.service',
      'changed: state /var/lib/tula-dsr/backend.json',
    ]);
    expect(result.counts).toEqual({ ok: 1, changed: 8, failed: 0, skipped: 0 });
    expect(result.tasks.find((t) => t.name.startsWith('boot unit'))!.detail).toBe(NOT_ENABLED);
    expect(result.roundTrips).toBe(2);

    // AND the host really carries it
    expect(await sysctl(be, 'net.ipv4.conf.all.arp_ignore')).toBe('1');
    expect(await sysctl(be, 'net.ipv4.conf.all.arp_announce')).toBe('2');
    expect(await addresses(be, 'lo')).toEqual(['127.0.0.1/8', `${VIP_A}/32`, `${VIP_B}/32`]);
    const plan = planBackendHost(parseHostSpec(specText) as BackendHostSpec);
    expect(plan.files.map((f) => f.path)).toEqual([BACKEND_SYSCTL_FILE, BACKEND_BOOT_SCRIPT, BACKEND_UNIT_FILE]);
    for (const file of plan.files) {
      expect(await sh(be, `cat ${file.path}`)).toBe(file.content);
      expect((await sh(be, `stat -c '%a %U:%G' ${file.path}`)).trim()).toBe(`${file.mode.replace(/^0/, '')} root:root`);
    }
    expect(await sh(be, `cat ${BACKEND_SYSCTL_FILE}`)).toContain('net.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\n');
    expect(await sh(be, `cat ${BACKEND_BOOT_SCRIPT}`)).toContain(
      `printf '%s\\n' \\\n\t'addr replace ${VIP_A}/32 dev lo' \\\n\t'addr replace ${VIP_B}/32 dev lo' \\\n\t| ip -batch -\n`,
    );
    // systemd is absent: the unit file is written but not enabled anywhere
    expect(await sh(be, 'find /etc/systemd -name "tula-dsr*" | sort')).toBe(`${BACKEND_UNIT_FILE}\n`);

    // AND the state file records this generation and the original sysctl values
    const state = HostStateSchema.parse(JSON.parse(await sh(be, 'cat /var/lib/tula-dsr/backend.json')));
    expect(state.generation).toBe(createHash('sha256').update(specText).digest('hex'));
    expect(state.originalSysctls).toEqual({ 'net.ipv4.conf.all.arp_ignore': '0', 'net.ipv4.conf.all.arp_announce': '0' });
    expect(state.unit).toEqual({ name: 'tula-dsr-backend.service', enabled: false });
    expect(await leftovers(be)).toEqual([]);
  });

  test('GIVEN an applied host WHEN apply runs again THEN changed=0, 1 round trip, and nothing on the host is modified', async () => {
    const before = await snapshot(be, { strict: true });

    const result = await run(specText, 'apply');

    expect(result.error).toBeUndefined();
    expect(result.counts).toEqual({ ok: 9, changed: 0, failed: 0, skipped: 0 });
    expect(result.roundTrips).toBe(1);
    // nothing modified: ruleset, addresses, sysctls, and every file's bytes, mtime and ctime, and directory times
    const after = await snapshot(be, { strict: true });
    expect(after.ruleset).toBe(before.ruleset);
    expect(after.addr).toBe(before.addr);
    expect(after.sysctls).toBe(before.sysctls);
    expect(after.files).toBe(before.files);
    expect(after.hashes).toBe(before.hashes);
  });

  test('GIVEN an applied host WHEN check runs THEN it reports in sync in 1 round trip', async () => {
    const result = await run(specText, 'check');
    expect(result.counts.changed).toBe(0);
    expect(result.roundTrips).toBe(1);
  });

  test('GIVEN a spec that drops a VIP WHEN apply runs THEN the VIP stays (retiring) so open flows finish, and nothing else changes', async () => {
    const fewer = JSON.stringify(backendSpec(lab, be, [{ ip: VIP_A, port: 80 }]));
    const result = await run(fewer, 'apply');
    expect(result.error).toBeUndefined();
    expect(result.tasks.find((t) => t.name === `address ${VIP_B}/32 dev lo`)).toEqual({
      name: `address ${VIP_B}/32 dev lo`,
      status: 'ok',
      detail: 'retiring: no longer wanted, removed by an apply after 300s so open flows finish',
      diff: undefined,
    });
    expect(await addresses(be, 'lo')).toEqual(['127.0.0.1/8', `${VIP_A}/32`, `${VIP_B}/32`]);
    // and the next apply of the same spec is a no-op again
    const again = await run(fewer, 'apply');
    expect(again.counts.changed).toBe(0);
    expect(again.roundTrips).toBe(1);
  });
});
