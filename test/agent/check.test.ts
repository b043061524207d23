/**
 * `tula-dsr check` through the real CLI: in sync → exit 0; a manual change on the host → exit 2 naming
 * the drift (with before/after text under --diff) and nothing changed by check itself; `apply` repairs it;
 * `--json` is machine-readable; a synthesized stack is checked across its hosts at once.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { BACKEND_SYSCTL_FILE } from '../../model';
import { assertDistFresh, backendSpec, balancerSpec, runCli, sh, snapshot, writeSpec, addresses, expectNoStackTrace } from './helpers';

jest.setTimeout(30_000);

const VIP = '10.99.3.10';

let lab: Lab;
let lb: LabHost;
let be1: LabHost;
let be2: LabHost;
let beFile: string;
let lbFile: string;

beforeAll(async () => {
  assertDistFresh();
  lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }, { name: 'be2' }] });
  ({ lb, be1, be2 } = lab.hosts);
  beFile = writeSpec(lab, backendSpec(lab, be1, [{ ip: VIP }]), 'be1.json');
  lbFile = writeSpec(
    lab,
    balancerSpec(lab, lb, [
      {
        name: 'web',
        ip: VIP,
        backends: [
          { name: 'be1', ip: be1.ip },
          { name: 'be2', ip: be2.ip },
        ],
      },
    ]),
    'lb.json',
  );
  for (const file of [beFile, lbFile]) {
    const r = await runCli(['apply', '--spec', file]);
    if (r.code !== 0) throw new Error(`apply ${file} failed:\n${r.stdout}${r.stderr}`);
  }
});

afterAll(async () => {
  await lab?.teardown();
});

/** The task lines of a report whose status is not ok. */
const notOk = (stdout: string) => stdout.split('\n').filter((l) => /^(changed|failed|skipped): /.test(l));

describe('check (drift detection) through the CLI', () => {
  test('GIVEN hosts in sync WHEN check runs THEN exit 0, every task ok, progress on stderr and results on stdout', async () => {
    for (const [file, host, tasks] of [
      [beFile, 'be1', 8],
      [lbFile, 'lb', 9],
    ] as const) {
      const r = await runCli(['check', '--spec', file]);
      expect(r.code).toBe(0);
      expect(notOk(r.stdout)).toEqual([]);
      expect(r.stdout).toMatch(new RegExp(`^${host} +: ok=${tasks} changed=0 failed=0 skipped=0  \\(\\d+ ms, 1 round trips\\)$`, 'm'));
      expect(r.stderr).toBe(`tula-dsr: ${host}: connected to root@${lab.hosts[host].ip}:22\n`);
    }
  });

  test('GIVEN the VIP deleted from lo WHEN check runs THEN exit 2 names the missing address, and check itself changes nothing', async () => {
    await sh(be1, `ip addr del ${VIP}/32 dev lo`);
    const before = await snapshot(be1, { strict: true, hashes: false });

    const r = await runCli(['check', '--spec', beFile, '--diff']);

    expect(r.code).toBe(2);
    expect(notOk(r.stdout)).toEqual([`changed: be1 address ${VIP}/32 dev lo (added)`]);
    expect(r.stdout).toContain(`changed: be1 address ${VIP}/32 dev lo (added)\n    + ${VIP}/32 dev lo\n`);
    expect(r.stdout).toMatch(/^be1 +: ok=7 changed=1 failed=0 skipped=0 /m);
    expect(await snapshot(be1, { strict: true, hashes: false })).toEqual(before);
    expect(await addresses(be1, 'lo')).toEqual(['127.0.0.1/8']);
  });

  test('GIVEN the sysctl.d file edited by hand WHEN check --diff runs THEN exit 2 with the before/after text of the file', async () => {
    await sh(be1, `sed -i 's/arp_announce = 2/arp_announce = 1/' ${BACKEND_SYSCTL_FILE} && echo 'net.ipv4.ip_forward = 1' >> ${BACKEND_SYSCTL_FILE}`);

    const r = await runCli(['check', '--spec', beFile, '--diff']);

    expect(r.code).toBe(2);
    expect(notOk(r.stdout)).toEqual([`changed: be1 address ${VIP}/32 dev lo (added)`, `changed: be1 file ${BACKEND_SYSCTL_FILE} (content differs)`]);
    expect(r.stdout).toContain(
      [
        `changed: be1 file ${BACKEND_SYSCTL_FILE} (content differs)`,
        `    --- ${BACKEND_SYSCTL_FILE} (host)`,
        `    +++ ${BACKEND_SYSCTL_FILE} (desired)`,
        '     # arp_announce=2: never use a VIP as the source of ARP requests.',
        '     net.ipv4.conf.all.arp_ignore = 1',
        '    -net.ipv4.conf.all.arp_announce = 1',
        '    -net.ipv4.ip_forward = 1',
        '    +net.ipv4.conf.all.arp_announce = 2',
        '',
      ].join('\n'),
    );
    // without --diff: the same verdict, no diff text
    const plain = await runCli(['check', '--spec', beFile]);
    expect(plain.code).toBe(2);
    expect(plain.stdout).not.toContain('+++');
  });

  test('GIVEN a rule added to the balancer table by hand WHEN check runs THEN exit 2 names the edited table', async () => {
    await sh(lb, 'nft add rule netdev tula_dsr l2_out counter');

    const r = await runCli(['check', '--spec', lbFile]);

    expect(r.code).toBe(2);
    expect(notOk(r.stdout)).toEqual([
      'changed: lb nft table netdev tula_dsr (1 VIPs) (live table was changed outside tula-dsr)',
      // apply would record the listing hash of the reloaded table
      expect.stringMatching(/^changed: lb state \/var\/lib\/tula-dsr\/balancer\.json \(generation [0-9a-f]{12} recorded\)$/),
    ]);
    expect(await sh(lb, 'nft list chain netdev tula_dsr l2_out')).toMatch(/\n\t\tcounter packets \d+ bytes \d+\n/);

    // --diff shows the hand-made rule as the difference between the live table and the table as applied
    const withDiff = await runCli(['check', '--diff', '--spec', lbFile]);
    expect(withDiff.code).toBe(2);
    expect(withDiff.stdout).toContain('    --- nft table netdev tula_dsr (live vs as applied) (host)');
    expect(withDiff.stdout).toContain('\n    -\t\tcounter\n');
  });

  test('GIVEN drifted hosts WHEN apply runs THEN it repairs exactly the drift, and check is back to exit 0', async () => {
    const be = await runCli(['apply', '--spec', beFile]);
    expect(be.code).toBe(0);
    expect(notOk(be.stdout)).toEqual([`changed: be1 address ${VIP}/32 dev lo (added)`, `changed: be1 file ${BACKEND_SYSCTL_FILE} (content differs)`]);
    const balancer = await runCli(['apply', '--spec', lbFile]);
    expect(balancer.code).toBe(0);
    expect(notOk(balancer.stdout)).toEqual([
      'changed: lb nft table netdev tula_dsr (1 VIPs) (live table was changed outside tula-dsr)',
      'changed: lb state /var/lib/tula-dsr/balancer.json (generation ' +
        (balancer.stdout.match(/generation ([0-9a-f]{12}) recorded/)?.[1] ?? '?') +
        ' recorded)',
    ]);
    // the hand-made rule is gone, the file and the VIP are back
    expect(await sh(lb, 'nft list chain netdev tula_dsr l2_out')).not.toMatch(/\n\t\tcounter packets/);
    expect(await sh(be1, `grep ^net.ipv4.conf.all.arp_announce ${BACKEND_SYSCTL_FILE}`)).toBe('net.ipv4.conf.all.arp_announce = 2\n');
    expect(await addresses(be1, 'lo')).toEqual(['127.0.0.1/8', `${VIP}/32`]);
    for (const file of [beFile, lbFile]) expect((await runCli(['check', '--spec', file])).code).toBe(0);
  });

  test('GIVEN drift WHEN check --json runs THEN stdout parses and carries per-task statuses; exit code 2', async () => {
    await sh(be1, `ip addr del ${VIP}/32 dev lo`);
    const r = await runCli(['check', '--spec', beFile, '--json']);
    expect(r.code).toBe(2);
    const json = JSON.parse(r.stdout) as {
      mode: string;
      results: { host: string; tasks: { name: string; status: string }[]; counts: Record<string, number>; roundTrips: number }[];
    };
    expect(json.mode).toBe('check');
    expect(json.results).toHaveLength(1);
    const [host] = json.results;
    expect(host).toMatchObject({ host: 'be1', kind: 'backend', mode: 'check', counts: { ok: 7, changed: 1, failed: 0, skipped: 0 }, roundTrips: 1 });
    expect(host.tasks.map((t) => `${t.status} ${t.name}`)).toEqual([
      'ok sysctl net.ipv4.conf.all.arp_ignore=1',
      'ok sysctl net.ipv4.conf.all.arp_announce=2',
      `changed address ${VIP}/32 dev lo`,
      `ok file ${BACKEND_SYSCTL_FILE}`,
      'ok file /etc/tula-dsr/backend-up.sh',
      'ok file /etc/systemd/system/tula-dsr-backend.service',
      'ok boot unit tula-dsr-backend.service',
      'ok state /var/lib/tula-dsr/backend.json',
    ]);
    expect((await runCli(['apply', '--spec', beFile])).code).toBe(0);
  });

  test('GIVEN a synthesized stack with both hosts WHEN check runs on the folder THEN every host is checked; one drift → exit 2', async () => {
    const dir = join(lab.dir, 'cdktf.out/stacks/lab');
    mkdirSync(dir, { recursive: true });
    const resource = (file: string) => ({
      triggers: { spec: readFileSync(file, 'utf8') },
      provisioner: [{ 'local-exec': { command: "node -e \"require('tula-dsr/agent').main(['apply'])\"" } }],
    });
    writeFileSync(join(dir, 'cdk.tf.json'), JSON.stringify({ resource: { null_resource: { lb: resource(lbFile), be1: resource(beFile) } } }));

    const inSync = await runCli(['check', dir]);
    expect(inSync.code).toBe(0);
    expect(inSync.stdout).toMatch(/^lb +: ok=9 changed=0 failed=0 skipped=0 /m);
    expect(inSync.stdout).toMatch(/^be1 +: ok=8 changed=0 failed=0 skipped=0 /m);

    await sh(be1, `ip addr del ${VIP}/32 dev lo`);
    const drift = await runCli(['check', dir]);
    expect(drift.code).toBe(2);
    expect(notOk(drift.stdout)).toEqual([`changed: be1 address ${VIP}/32 dev lo (added)`]);
    expectNoStackTrace(drift.stdout + drift.stderr);
    expect((await runCli(['apply', dir])).code).toBe(0);
  });
});
