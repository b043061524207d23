/**
 * A balancer pair on the L2 namespace lab: the example stack with its VIPs on a BalancerPair of `lb` (primary) and
 * `lb2`, deployed with the real terraform; the agent starts keepalived on each member (no systemd here: directly),
 * keepalived puts the VIPs on the active member only. Real HTTP traffic from the client shows what users get when
 * the primary's interface goes down, when its keepalived is killed, and when it comes back (failback); a throttled
 * 10 MiB download on the consistent-hash VIP spans each change. `terraform destroy` restores both members.
 *
 * Needs root, terraform and keepalived; without them every test here fails (none is skipped).
 */
import { execFileSync } from 'node:child_process';
import { createL2Lab, L2Lab } from '../../lab/l2/lab';
import type { Workspace } from '../../lab/l2/deploy';
import { deployExample, expectOk, sh } from '../support/lab-run';
import { faultAt, holdsVip, measureFailover, waitForVip } from '../../lab/l2/failover';
import { httpBurst, startDownload } from '../../lab/l2/traffic';
import { diffSnapshots, snapshotHost, HostSnapshot } from '../../lab/l2/snapshot';
import type { ExampleOptions } from '../../lab/example-stack';
import type { LabHost } from '../../lab/topology';
import { KEEPALIVED_CONFIG_FILE, KEEPALIVED_PID_FILES } from '../../model';

jest.setTimeout(240_000);

const ADVERT_SEC = 0.2;
const OPTIONS: ExampleOptions = { backends: ['web1', 'web2', 'web3'], weights: { web1: 1, web2: 1, web3: 1 }, pair: { advertIntervalSec: ADVERT_SEC } };
/** The goal at a sub-second interval is 1 s; the lab shares two cores with other jobs: 0.5 s of margin. */
const FAILOVER_BOUND_MS = 1500;

let l2: L2Lab;
let lb2: LabHost;
let ws: Workspace;
const before: Record<string, HostSnapshot> = {};

const keepalivedPid = async (host: LabHost) => Number((await host.exec(`cat ${KEEPALIVED_PID_FILES.main}`)).stdout.trim()) || null;

/** A throttled 10 MiB download on the consistent-hash VIP (`any`, every port) that lasts `seconds`. */
const slowDownload = (seconds: number) =>
  startDownload(l2.client, l2.python, { host: l2.vips.any, port: 80, path: `/slow?seconds=${seconds}`, timeoutSec: 10 });

beforeAll(async () => {
  l2 = await createL2Lab({ backends: 3, pair: true });
  lb2 = l2.lb2!;
  for (const h of [l2.lb, lb2]) before[h.name] = await snapshotHost(h);
  ws = await deployExample(l2, OPTIONS);
  // both start as BACKUP; the primary becomes MASTER after about 3 advertisement intervals
  await waitForVip(l2.lb, l2.vips.web, true, 10_000);
}, 180_000);

afterAll(async () => {
  await l2?.teardown();
  ws?.remove();
});

describe('a balancer pair on the L2 lab', () => {
  test('GIVEN the applied pair THEN keepalived runs on both members, only the primary holds the VIPs, both load the same table, and the VIPs answer', async () => {
    for (const h of [l2.lb, lb2]) {
      const pid = await keepalivedPid(h);
      expect(pid).not.toBeNull();
      expect(await sh(h, `tr '\\0' ' ' < /proc/${pid}/cmdline`)).toContain(`keepalived -n -l -D -f ${KEEPALIVED_CONFIG_FILE}`);
    }
    for (const vip of Object.values(l2.vips)) {
      expect({ vip, lb: await holdsVip(l2.lb, vip), lb2: await holdsVip(lb2, vip) }).toEqual({ vip, lb: true, lb2: false });
    }
    // the same rules, seeds and slot tables: only the balancer's own MAC (the frames' source) and name differ
    const ruleset = async (h: LabHost) =>
      (await sh(h, 'cat /etc/tula-dsr/balancer.nft'))
        .replace(/define lb_mac = \S+/, 'define lb_mac = MAC')
        .replace(/DSR balancer \S+ \(\S+\)/, 'DSR balancer NAME');
    expect(await ruleset(lb2)).toBe(await ruleset(l2.lb));
    const r = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 30, path: '/name' });
    expect({ failures: r.failures, backends: Object.keys(r.counts).sort() }).toEqual({ failures: 0, backends: ['web1', 'web2', 'web3'] });
  });

  test('GIVEN a switch that floods every frame to both members WHEN clients connect THEN only the active member schedules them', async () => {
    const bridge = (ageing: number) => execFileSync('ip', ['-n', l2.lab.switchNetns, 'link', 'set', 'br0', 'type', 'bridge', 'ageing_time', String(ageing)]);
    // ageing 0: the bridge learns no address and floods each frame to every port, as a switch does with an unknown one
    bridge(0);
    try {
      await sh(lb2, 'nft flush map netdev tula_dsr flows_l2_tcp');
      const r = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 60, path: '/name' });
      expect(r.failures).toBe(0);
      expect(await sh(lb2, 'nft list map netdev tula_dsr flows_l2_tcp')).not.toContain(l2.client.ip);
    } finally {
      bridge(30000);
    }
  });

  test('GIVEN a long download on the consistent-hash VIP WHEN the primary loses its interface THEN the secondary serves within the bound, the download completes intact, and failback breaks nothing', async () => {
    const download = slowDownload(8);
    const failover = await measureFailover(l2, { vip: l2.vips.web, next: lb2, fault: () => faultAt(l2.lb, 'ip link set eth0 down') });
    console.log(
      `interface down at advert_int ${ADVERT_SEC} s: the secondary held the VIP after ${failover.takeoverMs} ms; first successful request after ${failover.firstSuccessMs} ms; ${failover.failures} of ${failover.requests} requests failed`,
    );
    expect(failover.firstSuccessMs).not.toBeNull();
    expect(failover.firstSuccessMs!).toBeLessThan(FAILOVER_BOUND_MS);
    const failback = await measureFailover(l2, { vip: l2.vips.web, next: l2.lb, fault: () => faultAt(l2.lb, 'ip link set eth0 up') });
    console.log(`failback: the primary held the VIP after ${failback.takeoverMs} ms; ${failback.failures} of ${failback.requests} requests failed`);
    expect(await holdsVip(lb2, l2.vips.web)).toBe(false);
    const result = await download.result;
    expect({ status: result.status, bytes: result.bytes, error: result.error }).toEqual({ status: 200, bytes: 10 * 1024 * 1024, error: undefined });
  });

  test("GIVEN a long download on the consistent-hash VIP WHEN the primary's keepalived is killed THEN the secondary takes over, the download completes, and an apply brings the primary back", async () => {
    const download = slowDownload(8);
    // keepalived starts no checker process without virtual servers: that pid file is absent
    const pids = (await l2.lb.exec(`cat ${Object.values(KEEPALIVED_PID_FILES).join(' ')} 2>/dev/null`)).stdout;
    expect(pids.trim().split(/\s+/).length).toBeGreaterThanOrEqual(2);
    const failover = await measureFailover(l2, {
      vip: l2.vips.web,
      next: lb2,
      // every keepalived process at once, as a crash would: no "priority 0" goodbye
      fault: () => faultAt(l2.lb, `kill -KILL ${pids.trim().split(/\s+/).join(' ')}`),
    });
    console.log(
      `keepalived killed at advert_int ${ADVERT_SEC} s: the secondary held the VIP after ${failover.takeoverMs} ms; first successful request after ${failover.firstSuccessMs} ms; ${failover.failures} of ${failover.requests} requests failed`,
    );
    expect(failover.takeoverMs).toBeLessThan(FAILOVER_BOUND_MS);
    // the agent finds keepalived gone and starts it again; the primary takes the VIPs back (preempt)
    const apply = await ws.agent('apply');
    expectOk('tula-dsr apply', apply);
    expect(apply.stdout).toMatch(/changed: lb keepalived \(started by tula-dsr\) \(started\)/);
    await waitForVip(l2.lb, l2.vips.web, true, 10_000);
    await waitForVip(lb2, l2.vips.web, false, 10_000);
    const result = await download.result;
    expect({ status: result.status, bytes: result.bytes, error: result.error }).toEqual({ status: 200, bytes: 10 * 1024 * 1024, error: undefined });
  });

  test('GIVEN a new VRRP interval WHEN applied THEN keepalived checks and reloads the file (SIGHUP, same process) and the primary never drops the VIPs', async () => {
    const pid = await keepalivedPid(l2.lb);
    ws.synth({ ...OPTIONS, pair: { advertIntervalSec: 0.25 } });
    let dropped = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        if (!(await holdsVip(l2.lb, l2.vips.web))) dropped++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const apply = await ws.terraform(['apply', '-auto-approve', '-input=false', '-no-color']);
    sampling = false;
    await sampler;
    expectOk('terraform apply', apply);
    expect(apply.stdout).toMatch(/changed: lb keepalived configuration \/etc\/tula-dsr\/keepalived\.conf \(checked with keepalived -t before loading\)/);
    expect(apply.stdout).toMatch(/changed: lb keepalived \(started by tula-dsr\) \(reloaded: new configuration \(SIGHUP\)\)/);
    expect(await keepalivedPid(l2.lb)).toBe(pid);
    expect(await sh(l2.lb, 'cat /var/log/tula-dsr-keepalived.log')).toContain('Reloading');
    expect(await sh(l2.lb, `grep advert_int ${KEEPALIVED_CONFIG_FILE}`)).toBe('  advert_int 0.25\n');
    expect(dropped).toBe(0);
  });

  test('WHEN terraform destroy runs THEN both members are as before, byte for byte, and keepalived is gone', async () => {
    const destroy = await ws.terraform(['destroy', '-auto-approve', '-input=false', '-no-color']);
    expectOk('terraform destroy', destroy);
    expect(destroy.stdout).toMatch(/changed: lb keepalived \(started by tula-dsr\) \(stopped\)/);
    for (const h of [l2.lb, lb2]) {
      expect(await keepalivedPid(h)).toBeNull();
      expect(diffSnapshots(before[h.name], await snapshotHost(h))).toEqual([]);
      expect(await sh(h, 'ls /usr/local/lib/tula-dsr 2>/dev/null; ls /run | grep keepalived; true')).toBe('');
    }
  });
});
