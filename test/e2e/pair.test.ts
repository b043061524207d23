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
import * as path from 'node:path';
import { faultAt, holdsVip, measureCopyLag, measureFailover, waitForFlowCopies, waitForVip } from '../../lab/l2/failover';
import { BackgroundDownload, bigBodySha256, httpBurst, startDownload } from '../../lab/l2/traffic';
import { diffSnapshots, snapshotHost, HostSnapshot } from '../../lab/l2/snapshot';
import type { ExampleOptions } from '../../lab/example-stack';
import type { LabHost } from '../../lab/topology';
import {
  FlowCopyState,
  KEEPALIVED_CONFIG_FILE,
  KEEPALIVED_PID_FILES,
  PAIR_DEFAULTS,
  RUNTIME_LOG_FILE,
  RUNTIME_STATE_FILE,
  parseRuntimeState,
} from '../../model';

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

/**
 * Throttled 10 MiB downloads on the weighted-round-robin VIP (`web`, 3 backends of equal weight). Without the flow copy,
 * the member that takes over sends a mid-stream packet where its pinned-seed hash points: the same backend one time in
 * three, a reset otherwise; with four downloads, all four would survive about once in 81 failovers.
 */
const WRR_DOWNLOADS = 4;
const wrrDownloads = (seconds: number) =>
  Array.from({ length: WRR_DOWNLOADS }, () =>
    startDownload(l2.client, l2.python, { host: l2.vips.web, port: 80, path: `/slow?seconds=${seconds}`, timeoutSec: 10 }),
  );

/** Each download's outcome, with its body checked against what its backend serves. */
async function outcomes(downloads: readonly BackgroundDownload[]) {
  return Promise.all(
    downloads.map(async (d) => {
      const r = await d.result;
      const error = r.error === undefined ? undefined : `${r.error} after ${r.ms} ms`;
      return { status: r.status, bytes: r.bytes, intact: r.backend !== null && r.sha256 === bigBodySha256(r.backend), error };
    }),
  );
}

/** The downloads' source ports once every one is connected. */
async function connectedPorts(downloads: readonly BackgroundDownload[]): Promise<number[]> {
  const ports = await Promise.all(downloads.map((d) => d.connected));
  expect(ports).not.toContain(null);
  return ports as number[];
}

/**
 * Before a fault: the weighted-round-robin downloads are up and the primary's flow copy has put them on the secondary.
 * A flow younger than the copy's lag may be reset by a failover (README "Flow copy"). CI once saw one download reset
 * in the keepalived test, which follows a failback: either its copy was still on its way, or the copy session was not
 * back yet (see that test). What these tests claim is that established, copied flows keep their backend.
 */
async function copiedToSecondary(downloads: readonly BackgroundDownload[]): Promise<void> {
  const started = Date.now();
  const ports = await connectedPorts(downloads);
  const connectedMs = Date.now() - started;
  await waitForFlowCopies(l2, { active: l2.lb, passive: lb2, vip: l2.vips.web, ports, timeoutMs: 4 * COPY_LAG_BOUND_MS });
  console.log(`${downloads.length} downloads connected ${connectedMs} ms after they started, on the secondary ${Date.now() - started} ms after`);
}
const INTACT = { status: 200, bytes: 10 * 1024 * 1024, intact: true, error: undefined };

/** The flow copy's lag bound: the runtime lists every 200 ms; the lab shares two cores with other jobs. */
const COPY_LAG_BOUND_MS = 1500;
/** The flow copy driver, run with node inside a lab host (see test/support/flow-copy-peer.ts). */
const PEER_DRIVER = path.join(__dirname, '..', '..', 'dist', 'test', 'support', 'flow-copy-peer.js');

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

  test('GIVEN a switch that floods every frame to both members WHEN clients connect THEN only the active member schedules them, and the passive one holds its copies', async () => {
    const bridge = (ageing: number) => execFileSync('ip', ['-n', l2.lab.switchNetns, 'link', 'set', 'br0', 'type', 'bridge', 'ageing_time', String(ageing)]);
    // ageing 0: the bridge learns no address and floods each frame to every port, as a switch does with an unknown one
    bridge(0);
    try {
      // no connection is open now: once the copies of earlier tests' flows have landed, both members start from
      // empty flow maps
      await new Promise((resolve) => setTimeout(resolve, COPY_LAG_BOUND_MS));
      for (const h of [l2.lb, lb2])
        await sh(h, 'for m in flows_l2_tcp closing_l2_tcp recent_l2_tcp; do nft flush map netdev tula_dsr $m; done; nft flush set netdev tula_dsr seen_l2_tcp');
      const r = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 60, path: '/name' });
      expect(r.failures).toBe(0);
      // the secondary recorded none of them itself (what it records, it notes in seen_l2_tcp); its flow map holds the
      // primary's copies, each with the backend the primary chose
      expect(await sh(lb2, 'nft list set netdev tula_dsr seen_l2_tcp')).not.toContain(l2.client.ip);
      await new Promise((resolve) => setTimeout(resolve, COPY_LAG_BOUND_MS));
      // the primary moved each flow to its closing map when the client ended it; the secondary never saw the end
      const flows = async (h: LabHost) =>
        Object.fromEntries(
          [
            ...(await sh(h, 'nft list map netdev tula_dsr flows_l2_tcp; nft list map netdev tula_dsr closing_l2_tcp')).matchAll(
              /(\S+ \. \d+ \. \S+ \. \d+) timeout \S+ expires \S+ : ([0-9a-f:]{17})/g,
            ),
          ]
            .filter((m) => m[1].startsWith(`${l2.client.ip} `))
            .map((m) => [m[1], m[2]]),
        );
      const [primary, secondary] = [await flows(l2.lb), await flows(lb2)];
      expect(Object.keys(primary).length).toBe(60);
      expect(secondary).toEqual(primary);
    } finally {
      bridge(30000);
    }
  });

  test("GIVEN the applied pair THEN each member's runtime knows the other by its pinned host key, and a new connection's flow reaches the secondary within the bound", async () => {
    for (const [h, peer] of [
      [l2.lb, lb2],
      [lb2, l2.lb],
    ] as const) {
      const log = await sh(h, `cat ${RUNTIME_LOG_FILE}`);
      expect(log).toContain(
        `flow copy: sending to ${peer.name} (${peer.ip}:${PAIR_DEFAULTS.flowCopyPort}), authenticated by its host key ${peer.hostKeyFingerprint}`,
      );
      expect(log).toMatch(
        new RegExp(
          `flow copy: ${peer.name} \\(${peer.ip.replace(/\./g, '\\.')}:\\d+\\) authenticated by its host key ${peer.hostKeyFingerprint.replace(/[+/]/g, '\\$&')}`,
        ),
      );
    }
    const lags = await measureCopyLag(l2, lb2, l2.vips.web, 10);
    const sorted = lags.filter((x): x is number => x !== null).sort((a, b) => a - b);
    console.log(
      `flow copy lag (SYN on the primary to the entry in the secondary's flow map), 10 connections: median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted[sorted.length - 1]} ms: ${lags.join(', ')} ms`,
    );
    expect(lags.every((x) => x !== null && x < COPY_LAG_BOUND_MS)).toBe(true);
  });

  test("GIVEN the primary's flow copy listener WHEN a stranger, a replayed message, and flows of an unknown VIP or of another VIP's backend arrive THEN each is refused, logged and counted in the state file, and no such flow is written", async () => {
    const fingerprint = l2.lb.hostKeyFingerprint;
    const driver = async (args: object) => {
      const r = await lb2.exec(['node', PEER_DRIVER, JSON.stringify({ address: l2.lb.ip, port: PAIR_DEFAULTS.flowCopyPort, pins: [fingerprint], ...args })]);
      if (r.code !== 0) throw new Error(`the flow copy driver exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as unknown;
    };
    const logLines = async () => (await sh(l2.lb, `cat ${RUNTIME_LOG_FILE}`)).split('\n');
    const before = (await logLines()).length;

    // a stranger on the peer's own address, with a valid ed25519 key that is not the pinned one
    await sh(lb2, 'rm -f /tmp/stranger /tmp/stranger.pub && ssh-keygen -q -t ed25519 -N "" -f /tmp/stranger');
    const strangerFingerprint = (await sh(lb2, 'ssh-keygen -lf /tmp/stranger.pub')).split(' ')[1];
    expect(await driver({ keyFile: '/tmp/stranger', scenario: 'handshake' })).toEqual({ closed: true, seen: [] });
    // the real peer's key, one message sent twice
    expect(await driver({ keyFile: '/etc/ssh/ssh_host_ed25519_key', scenario: 'replay' })).toEqual({ closed: true, seen: [{ t: 'ack' }] });
    // the real peer's key, entries no member would send
    const webBackendMac = (await sh(lb2, `ip -j neigh show ${l2.backends[0].ip}`)).match(/"lladdr":"([^"]+)"/)![1];
    const bad = [
      ['flows_l2_tcp', '10.213.1.9', 51001, '10.213.1.199', 80, webBackendMac],
      ['flows_l2_tcp', '10.213.1.9', 51002, l2.vips.web, 80, '02:66:66:66:66:66'],
      ['flows_l2_udp', '10.213.1.9', 51003, l2.vips.web, 80, webBackendMac],
    ];
    expect(await driver({ keyFile: '/etc/ssh/ssh_host_ed25519_key', scenario: 'flows', entries: bad })).toEqual({
      ack: { t: 'ack', written: 0, refused: 3 },
      seen: [{ t: 'ack', written: 0, refused: 3 }],
    });
    const logged = (await logLines()).slice(before - 1).join('\n');
    expect(logged).toContain(`host key ${strangerFingerprint} is not the pinned one (${lb2.hostKeyFingerprint})`);
    expect(logged).toContain('message 0 when 1 was due (replayed or reordered)');
    expect(logged).toContain(`refused 3 of 3 entries from ${lb2.ip}:`);
    expect(logged).toContain(`flows_l2_tcp 10.213.1.9:51001 -> 10.213.1.199:80: 10.213.1.199:80 is no l2 tcp VIP of this pair`);
    expect(logged).toContain(`flows_l2_tcp 10.213.1.9:51002 -> ${l2.vips.web}:80: "02:66:66:66:66:66" is not a backend of VIP web`);
    expect(logged).toContain(`flows_l2_udp 10.213.1.9:51003 -> ${l2.vips.web}:80: ${l2.vips.web}:80 is no l2 udp VIP of this pair`);
    const maps = await sh(l2.lb, 'nft list map netdev tula_dsr flows_l2_tcp; nft list map netdev tula_dsr flows_l2_udp');
    expect(maps).not.toMatch(/10\.213\.1\.9 \. 5100[123] /);
    // the state file (rewritten every 5 s) counts them; the secondary counts the flows it took from the primary
    const state = async (h: LabHost) => parseRuntimeState(await sh(h, `cat ${RUNTIME_STATE_FILE}`))?.flowCopy;
    let primary: FlowCopyState | undefined;
    for (let i = 0; i < 40 && ((primary?.refusedConnections ?? 0) < 2 || (primary?.refusedEntries ?? 0) < 3); i++) {
      await new Promise((r) => setTimeout(r, 250));
      primary = await state(l2.lb);
    }
    expect(primary).toMatchObject({ peer: 'lb2', sending: true, refusedConnections: 2, refusedEntries: 3 });
    expect(await state(lb2)).toMatchObject({ peer: 'lb', sending: true, refusedConnections: 0, refusedEntries: 0 });
    expect((await state(lb2))!.received).toBeGreaterThanOrEqual(60);
  });

  test('GIVEN long downloads on the consistent-hash and the weighted-round-robin VIP WHEN the primary loses its interface THEN the secondary serves within the bound, the downloads complete intact, and failback breaks nothing', async () => {
    const download = slowDownload(8);
    const wrr = wrrDownloads(16);
    await copiedToSecondary(wrr);
    const failover = await measureFailover(l2, { vip: l2.vips.web, next: lb2, fault: () => faultAt(l2.lb, 'ip link set eth0 down') });
    // opened on the secondary: failback must not break them either
    const openedOnSecondary = wrrDownloads(10);
    // up on the secondary before the primary returns; their copies reach it within preempt_delay
    await connectedPorts(openedOnSecondary);
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
    // the weighted-round-robin downloads went through failover and failback, and those opened on the secondary through failback
    expect(await outcomes(wrr)).toEqual(Array(WRR_DOWNLOADS).fill(INTACT));
    expect(await outcomes(openedOnSecondary)).toEqual(Array(WRR_DOWNLOADS).fill(INTACT));
  });

  test("GIVEN long downloads on the consistent-hash and the weighted-round-robin VIP WHEN the primary's keepalived is killed THEN the secondary takes over, the downloads complete intact, and an apply brings the primary back", async () => {
    // The previous test's failback: the primary's copy session to the secondary is made again after its interface
    // came back. A fresh connection's copy landing shows it works (CI once saw no copy land for more than 6 s here).
    const resumed = Date.now();
    let lag: number | null = null;
    for (let i = 0; i < 6 && lag === null; i++) [lag] = await measureCopyLag(l2, lb2, l2.vips.web, 1);
    console.log(`after the failback, a new flow's copy landed ${Date.now() - resumed} ms after the test began (lag ${lag} ms)`);
    expect(lag).not.toBeNull();
    const download = slowDownload(8);
    const wrr = wrrDownloads(16);
    await copiedToSecondary(wrr);
    // keepalived starts no checker process without virtual servers: that pid file is absent
    const readPids = `cat ${Object.values(KEEPALIVED_PID_FILES).join(' ')} 2>/dev/null`;
    const pids = (await l2.lb.exec(readPids)).stdout;
    expect(pids.trim().split(/\s+/).length).toBeGreaterThanOrEqual(2);
    const failover = await measureFailover(l2, {
      vip: l2.vips.web,
      next: lb2,
      // every keepalived process at once, as a crash would: no "priority 0" goodbye. The pids are read again at the
      // fault (CI once saw kill fail on a pid read a second earlier); kill signals every live one even when one is gone.
      fault: () => faultAt(l2.lb, `p=$(${readPids}); [ -n "$p" ] && { kill -KILL $p 2>/dev/null; true; }`),
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
    expect(await outcomes(wrr)).toEqual(Array(WRR_DOWNLOADS).fill(INTACT));
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
