/**
 * Rolling back a failed apply on real hosts (real sshd, real ip, nft and sysctl). Failures are made real by
 * replacing a tool inside one lab host's own mount namespace with a wrapper (see withWrappedTool):
 *  - the failing step is undone too, not only the steps before it, so a step that fails halfway leaves nothing;
 *  - an undo that fails is reported, and the run no longer claims that everything was rolled back;
 *  - stderr output of a step that worked (nft warning after loading) is a warning, not a failure;
 *  - every undo is idempotent: it is safe on a host where its step did nothing.
 */
import { renderApplyScript, parseApplyOutput } from '../../agent/script';
import { connect } from '../../agent/ssh/connection';
import { addAddressStep, addTunnelStep, removeFileStep, writeFileStep } from '../../agent/tasks/steps';
import { changed } from '../../agent/tasks/task';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { backendSpec, balancerSpec, leftovers, run, sh, snapshot, sysctl, withWrappedTool } from './helpers';

jest.setTimeout(30_000);

let lab: Lab;
let be1: LabHost;
let be2: LabHost;
let lb: LabHost;

beforeAll(async () => {
  lab = await createLab({ hosts: [{ name: 'be1' }, { name: 'be2' }, { name: 'lb' }] });
  ({ be1, be2, lb } = lab.hosts);
});

afterAll(async () => {
  await lab?.teardown();
});

const BOOT_SCRIPT = '/etc/tula-dsr/backend-up.sh';
const MV_FAILURE = `mv: cannot move '${BOOT_SCRIPT}.tula-tmp' to '${BOOT_SCRIPT}': Input/output error`;
/** A wrapper for mv that fails the rename of the boot script into place, as a failing disk would. */
const failBootScriptRename = `[ "$*" = "-f ${BOOT_SCRIPT}.tula-tmp ${BOOT_SCRIPT}" ] && { echo "${MV_FAILURE}" >&2; exit 1; }`;

describe('the failing step is rolled back too', () => {
  test('GIVEN a configured backend whose boot script cannot be renamed into place WHEN a new VIP is applied THEN the host is exactly as before, with no temp file or backup left', async () => {
    const one = backendSpec(lab, be1, [{ ip: '10.99.8.10' }]);
    expect((await run(one, 'apply')).error).toBeUndefined();
    const before = await snapshot(be1);

    const result = await withWrappedTool(be1, '/usr/bin/mv', failBootScriptRename, () =>
      run(backendSpec(lab, be1, [{ ip: '10.99.8.10' }, { ip: '10.99.8.11' }]), 'apply'),
    );

    expect(result.error?.message).toBe(`file ${BOOT_SCRIPT}: command exited with 1: ${MV_FAILURE}; every change of this run was rolled back`);
    expect(await leftovers(be1)).toEqual([]);
    expect(await snapshot(be1)).toEqual(before);
  });

  test('GIVEN a step that fails at its second half (a link created, then refused an address) WHEN the apply script rolls back THEN the link is gone, and so is the earlier change', async () => {
    const tasks = [
      changed('address 10.99.8.1/32 dev lo', 'added', [addAddressStep('10.99.8.1', 32, 'lo')]),
      changed('link tulaT0', 'created', [
        {
          run: 'ip link add tulaT0 type veth peer name tulaT1 && ip link set tulaT0 address 01:00:00:00:00:01',
          undo: addTunnelStep('tulaT0', '10.0.0.1', 'any').undo,
        },
      ]),
    ];
    const before = await snapshot(be2);
    const connection = await connect(be2.target());
    try {
      const { script } = renderApplyScript(tasks, '/var/lib/tula-dsr/none.json', 'none');
      const outcome = parseApplyOutput((await connection.run(script)).stdout);

      expect(outcome.failure).toEqual({ step: 2, exitCode: 2, stderr: 'RTNETLINK answers: Cannot assign requested address' });
      expect(outcome.undoFailures.size).toBe(0);
    } finally {
      await connection.close();
    }
    expect((await be2.exec('ip link show tulaT0')).code).not.toBe(0);
    expect(await snapshot(be2)).toEqual(before);
  });
});

describe('a step that ends the shell', () => {
  test('GIVEN a step that calls exit after the address step WHEN the apply script runs THEN that step is the failure, reported with its stderr, and the address is undone', async () => {
    const tasks = [
      changed('address 10.99.8.2/32 dev lo', 'added', [addAddressStep('10.99.8.2', 32, 'lo')]),
      changed('exits', 'ends the shell', [{ run: 'echo refused >&2; exit 3', undo: ':' }]),
      changed('never', 'not reached', [{ run: 'touch /tmp/never-reached', undo: ':' }]),
    ];
    const before = await snapshot(be2);
    const connection = await connect(be2.target());
    try {
      const { script } = renderApplyScript(tasks, '/var/lib/tula-dsr/none.json', 'none');
      const outcome = parseApplyOutput((await connection.run(script)).stdout);

      expect(outcome.failure).toEqual({ step: 2, exitCode: 3, stderr: 'refused' });
      expect(outcome.completedSteps).toBe(1);
      expect(outcome.undoFailures.size).toBe(0);
    } finally {
      await connection.close();
    }
    expect(await sh(be2, 'test -e /tmp/never-reached && echo reached || echo absent')).toBe('absent\n');
    expect(await snapshot(be2)).toEqual(before);
  });
});

describe('an undo that fails', () => {
  test('GIVEN a fresh backend whose apply fails late, and whose sysctl refuses to restore arp_ignore WHEN apply runs THEN that task is failed with the tool message and the run says what may remain', async () => {
    const originalIgnore = await sysctl(be2, 'net.ipv4.conf.all.arp_ignore');
    const originalAnnounce = await sysctl(be2, 'net.ipv4.conf.all.arp_announce');
    const refusal = 'sysctl: permission denied on key "net.ipv4.conf.all.arp_ignore"';
    const refuseRestore = `case "$*" in *arp_ignore=${originalIgnore}*) echo '${refusal}' >&2; exit 1;; esac`;

    const result = await withWrappedTool(be2, '/usr/sbin/sysctl', refuseRestore, () =>
      withWrappedTool(be2, '/usr/bin/mv', failBootScriptRename, () => run(backendSpec(lab, be2, [{ ip: '10.99.8.20' }]), 'apply')),
    );

    try {
      expect(result.error?.message).toBe(
        `file ${BOOT_SCRIPT}: command exited with 1: ${MV_FAILURE}; rolling back failed for sysctl net.ipv4.conf.all.arp_ignore=1: ` +
          'those changes may still be on the host; fix the cause and run apply again',
      );
      expect(result.tasks.filter((t) => t.status === 'failed').map((t) => [t.name, t.detail])).toEqual([
        ['sysctl net.ipv4.conf.all.arp_ignore=1', `rolling back failed: ${refusal}`],
        [`file ${BOOT_SCRIPT}`, result.error?.message],
      ]);
      // what the report says is what the host has: arp_ignore kept tula-dsr's value, the rest was rolled back
      expect(await sysctl(be2, 'net.ipv4.conf.all.arp_ignore')).toBe('1');
      expect(await sysctl(be2, 'net.ipv4.conf.all.arp_announce')).toBe(originalAnnounce);
      expect(await sh(be2, 'ip -o addr show dev lo to 10.99.8.20/32')).toBe('');
    } finally {
      await sh(be2, `sysctl -q -w net.ipv4.conf.all.arp_ignore=${originalIgnore}`);
    }
  });
});

describe('stderr of a step that worked', () => {
  test('GIVEN nft that loads the ruleset but prints a warning WHEN a balancer applies THEN the run succeeds, the nft task shows the warning, and the state records the run', async () => {
    const spec = balancerSpec(lab, lb, [
      { name: 'web', ip: '10.99.8.30', port: 80, backends: [{ name: 'a', ip: lab.subnet.replace(/0\/24$/, '160'), mac: '52:54:00:00:08:01' }] },
    ]);
    const warning = "Warning: this test's nft warns after loading";
    const warnAfterLoading = `if [ "$*" = "-f /var/lib/tula-dsr/netdev-tula_dsr.load.nft" ]; then "$REAL" "$@" || exit $?; echo "${warning}" >&2; exit 0; fi`;

    const result = await withWrappedTool(lb, '/usr/sbin/nft', warnAfterLoading, () => run(spec, 'apply'));

    expect(result.error).toBeUndefined();
    expect(result.tasks.find((t) => t.name.startsWith('nft table netdev tula_dsr'))?.detail).toBe(`table missing; warning: ${warning}`);
    expect(await sh(lb, 'nft list map netdev tula_dsr vip_pool_port')).toMatch(/10\.99\.8\.30 . tcp . 80 : [0-9a-f]+:[0-9a-f]+/);
    expect((await run(spec, 'apply')).counts.changed).toBe(0);
  });
});

describe('idempotent undos', () => {
  test.each([
    ['writing a new file', writeFileStep('/etc/tula-undo/new.conf', 'x\n', '0644', false)],
    ['replacing a file', writeFileStep('/etc/hostname', 'x\n', '0644', true)],
    ['removing a file', removeFileStep('/etc/hostname')],
    ['creating a tunnel', addTunnelStep('tulaT9', '10.0.0.1', 'any')],
    ['adding an address', addAddressStep('10.99.8.9', 32, 'lo')],
  ])('GIVEN the step for %s never ran WHEN its undo runs THEN it succeeds and changes nothing', async (_what, step) => {
    const before = await snapshot(be1, { strict: true });
    const r = await be1.exec(step.undo);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(await snapshot(be1, { strict: true })).toEqual(before);
  });
});
