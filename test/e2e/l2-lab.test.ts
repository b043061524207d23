/**
 * End to end on the L2 namespace lab (lab/l2): cdktf synth, the real `cdktf deploy` and `terraform` CLIs, the
 * provisioners, the agent over real SSH, nft on the real kernel, and traffic from the client that must bypass
 * the balancer on the way back. Needs root and terraform on PATH; without them every test here fails (none is
 * skipped). The tests run in order against one lab and build on each other's state, as a user's deploys would.
 *
 * The lab has four backends; the stack starts with web1..web3 (weights 1:2:3), and the zero-downtime test adds
 * web4. Hosts: client .1, lb .2, web1..4 .11-.14; VIPs web .100:80, dns .101:5353/udp, any .102:* (see lab/l2).
 */
import { readFileSync } from 'node:fs';
import { createL2Lab, L2Lab } from '../../lab/l2/lab';
import { applySummary, createWorkspace, RunResult, Workspace } from '../../lab/l2/deploy';
import { flushFlows, httpBurst, measureByteShare, startDownload, startLoad, udpBurst, LoadRecord } from '../../lab/l2/traffic';
import { diffSnapshots, HostSnapshot, snapshotHost } from '../../lab/l2/snapshot';
import type { ExampleOptions } from '../../lab/example-stack';
import type { LabHost } from '../../lab/topology';
import { waitFor } from '../../lab/exec';
import { TRIGGERS_INLINE_MAX_BYTES_CONTEXT_KEY } from '../../constructs';
import { COMPRESSED_SPEC_PREFIX, triggersFileOf } from '../../model';
import { applyExample, expectOk } from '../support/lab-run';

jest.setTimeout(120_000);

const INITIAL: ExampleOptions = { backends: ['web1', 'web2', 'web3'], weights: { web1: 1, web2: 2, web3: 3 } };

/** An nft configuration on the balancer that has nothing to do with tula-dsr; it must survive every step. */
const UNRELATED_NFT = `table inet lab_unrelated {
  set blocked {
    type ipv4_addr
    elements = { 192.0.2.1, 198.51.100.7 }
  }
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr @blocked drop
  }
}
table netdev lab_unrelated_ingress {
  chain ingress {
    type filter hook ingress device "eth0" priority 10; policy accept;
    ip saddr 192.0.2.1 drop
  }
}
`;
const UNRELATED_LIST = 'nft -a list table inet lab_unrelated && nft -a list table netdev lab_unrelated_ingress';

let l2: L2Lab;
let ws: Workspace;
let baseline: Record<string, HostSnapshot>;
let unrelatedListing: string;

const byName = (name: string): LabHost => l2.lab.hosts[name];
const tfApply = () => ws.terraform(['apply', '-auto-approve', '-input=false', '-no-color']);

const deploy = (options: ExampleOptions): Promise<RunResult> => applyExample(ws, options);

async function snapshotAll(): Promise<Record<string, HostSnapshot>> {
  const hosts = [l2.client, l2.lb, ...l2.backends];
  const snaps = await Promise.all(hosts.map(snapshotHost));
  return Object.fromEntries(snaps.map((s) => [s.host, s]));
}

beforeAll(async () => {
  // no root: createL2Lab throws "the L2 lab needs root…", and every test below fails with it
  l2 = await createL2Lab({ backends: 4 });
  const r = await l2.lb.exec(['nft', '-f', '-'], UNRELATED_NFT);
  if (r.code !== 0) throw new Error(`loading the unrelated nft tables failed: ${r.stderr}`);
  unrelatedListing = (await l2.lb.exec(UNRELATED_LIST)).stdout;
  baseline = await snapshotAll();
  ws = await createWorkspace({ inventory: l2.inventory, inventoryPath: l2.inventoryPath, engine: 'null_resource' });
}, 60_000);

afterAll(async () => {
  await l2?.teardown();
  ws?.remove();
});

afterEach(async () => {
  // the unrelated tables on the balancer are untouched throughout: same rules, same handles
  expect((await l2.lb.exec(UNRELATED_LIST)).stdout).toBe(unrelatedListing);
});

describe('L2 DSR lab, end to end', () => {
  test('1+8. GIVEN the lab WHEN the example stack is deployed through the real `cdktf deploy` CLI THEN 600 requests split exactly 100/200/300, UDP reaches every backend and the all-ports VIP answers on two ports', async () => {
    const deployed = await ws.cdktfDeploy(INITIAL);
    expectOk('cdktf deploy', deployed);
    const out = deployed.stdout + deployed.stderr;
    expect(out).toMatch(/Apply complete! Resources: 4 added, 0 changed, 0 destroyed/);
    expect(out).toMatch(/lb: applying \d+ change/);

    await flushFlows(l2.lb);
    const burst = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 600, concurrency: 4 });
    expect(burst.failures).toBe(0);
    expect(burst.counts).toEqual({ web1: 100, web2: 200, web3: 300 });

    const udp = await udpBurst(l2.client, l2.python, { host: l2.vips.dns, port: 5353, count: 30 });
    expect(udp.failures).toBe(0);
    expect(Object.keys(udp.counts).sort()).toEqual(['web1', 'web2', 'web3']);

    for (const port of [80, 8080]) {
      const any = await httpBurst(l2.client, l2.python, { host: l2.vips.any, port, count: 30 });
      expect(any.failures).toBe(0);
      expect(Object.values(any.counts).reduce((a, b) => a + b, 0)).toBe(30);
      expect(Object.keys(any.counts).every((n) => ['web1', 'web2', 'web3'].includes(n))).toBe(true);
    }
  });

  test('10. GIVEN a client that reuses 20 source ports (as behind a NAT) WHEN 600 requests run, then a backend is drained and restored THEN each 600 split exactly 100/200/300, with no flow map flushed, and the restored backend gets its full share at once', async () => {
    // Every connection ends with the client's FIN, so each reuse of a port is a new connection, scheduled afresh.
    // Paced to about 5 reuses of each 4-tuple a second: the README says why a much faster reuse of one 4-tuple can
    // leave a connection to the pinned-seed hash instead of round robin.
    const reuse = { host: l2.vips.web, port: 80, count: 600, concurrency: 2, sourcePorts: 20, pauseMs: 20 };
    const first = await httpBurst(l2.client, l2.python, reuse);
    expect(first.failures).toBe(0);
    expect(first.counts).toEqual({ web1: 100, web2: 200, web3: 300 });

    await deploy({ ...INITIAL, weights: { ...INITIAL.weights, web3: 0 } });
    const drained = await httpBurst(l2.client, l2.python, { ...reuse, count: 60 });
    expect(drained.failures).toBe(0);
    expect(drained.counts).toEqual({ web1: 20, web2: 40 });

    await deploy(INITIAL);
    const restored = await httpBurst(l2.client, l2.python, reuse);
    expect(restored.failures).toBe(0);
    expect(restored.counts).toEqual({ web1: 100, web2: 200, web3: 300 });
  });

  test('2. GIVEN the deployment WHEN the client downloads 10 MiB through the VIP THEN the balancer carries <= 1% of the bytes and no VIP-sourced packet crosses it', async () => {
    const capture = l2.lb.spawn(['tcpdump', '-U', '-l', '-n', '-Z', 'root', '-i', 'eth0', `host ${l2.vips.web}`]);
    expect(await waitFor(() => /listening on/.test(capture.stderrText()) || !capture.isRunning(), 5000, 20)).toBe(true);
    const share = await measureByteShare(l2.client, l2.lb, l2.python, { host: l2.vips.web, port: 80 });
    await new Promise((r) => setTimeout(r, 300));
    await capture.stop('SIGINT', 3000);

    expect(share.download.error).toBeUndefined();
    expect(share.download.bytes).toBe(10 * 1024 * 1024);
    expect(share.clientBytes).toBeGreaterThan(10 * 1024 * 1024);
    expect(share.share).toBeLessThanOrEqual(0.01);

    const lines = capture
      .stdoutText()
      .split('\n')
      .filter((l) => / IP /.test(l));
    const vip = l2.vips.web.replace(/\./g, '\\.');
    const toVip = lines.filter((l) => new RegExp(` > ${vip}\\.80: `).test(l));
    const fromVip = lines.filter((l) => new RegExp(` IP ${vip}\\.\\d+ > `).test(l));
    // the capture works (it sees the requests, coming in and forwarded) and sees no reply
    expect(toVip.length).toBeGreaterThan(0);
    expect(fromVip).toEqual([]);
    process.stdout.write(
      `DSR: lb carried ${(share.share * 100).toFixed(3)}% of ${share.clientBytes} bytes; ${toVip.length} request packets, ${fromVip.length} VIP-sourced packets seen on lb eth0\n`,
    );
  });

  test('3. GIVEN the deployment WHEN terraform apply runs again with no change THEN it runs nothing and `tula-dsr check` on the stack reports in sync', async () => {
    ws.synth(INITIAL); // in-process synth must give what the CLI synthesized
    const again = await tfApply();
    expectOk('terraform apply', again);
    expect(applySummary(again.stdout)).toBe('Apply complete! Resources: 0 added, 0 changed, 0 destroyed.');
    expect(again.stdout).not.toMatch(/Provisioning with|local-exec/);

    const check = await ws.agent('check');
    expect(check.code).toBe(0);
    for (const host of ['lb', 'web1', 'web2', 'web3']) expect(check.stdout).toMatch(new RegExp(`^${host}\\s+: ok=\\d+ changed=0 failed=0`, 'm'));
  });

  test("5. GIVEN the deployment WHEN the VIP is deleted from one backend's lo by hand THEN check exits 2 naming it, and apply repairs it", async () => {
    const web2 = byName('web2');
    expect((await web2.exec(['ip', 'addr', 'del', `${l2.vips.web}/32`, 'dev', 'lo'])).code).toBe(0);

    const check = await ws.agent('check');
    expect(check.code).toBe(2);
    expect(check.stdout).toContain(`changed: web2 address ${l2.vips.web}/32 dev lo`);
    expect(check.stdout).toMatch(/^web2\s+: ok=\d+ changed=1 failed=0/m);
    for (const host of ['lb', 'web1', 'web3']) expect(check.stdout).toMatch(new RegExp(`^${host}\\s+: ok=\\d+ changed=0 failed=0`, 'm'));

    const repair = await ws.agent('apply');
    expectOk('tula-dsr apply', repair);
    expect((await web2.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'lo'])).stdout).toContain(`${l2.vips.web}/32`);
    expect((await ws.agent('check')).code).toBe(0);

    await flushFlows(l2.lb);
    const burst = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 60 });
    expect(burst.failures).toBe(0);
    expect(burst.counts).toEqual({ web1: 10, web2: 20, web3: 30 });
  });

  test('7. GIVEN a backend whose runtime state is lost (reboot) WHEN its boot script runs THEN it serves again', async () => {
    const web1 = byName('web1');
    const cleared = await web1.exec('ip -4 addr flush dev lo scope global && sysctl -q -w net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0');
    expect(cleared.code).toBe(0);
    expect((await web1.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'lo'])).stdout).not.toContain(l2.vips.web);
    expect((await ws.agent('check')).code).toBe(2);

    // what tula-dsr-backend.service runs at boot; it applies the sysctl.d file with `sysctl -p` first
    const script = (await web1.exec(['cat', '/etc/tula-dsr/backend-up.sh'])).stdout;
    expect(script).toContain('sysctl -q -p /etc/sysctl.d/99-tula-dsr.conf');
    const boot = await web1.exec(['sh', '/etc/tula-dsr/backend-up.sh']);
    expect(boot.stderr).toBe('');
    expect(boot.code).toBe(0);

    expect((await web1.exec('sysctl -n net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce')).stdout.split('\n').slice(0, 2)).toEqual(['1', '2']);
    const lo = (await web1.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'lo'])).stdout;
    for (const vip of Object.values(l2.vips)) expect(lo).toContain(`${vip}/32`);
    expect((await ws.agent('check')).code).toBe(0);

    await flushFlows(l2.lb);
    const burst = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 60 });
    expect(burst.failures).toBe(0);
    expect(burst.counts).toEqual({ web1: 10, web2: 20, web3: 30 });
  });

  test("4. GIVEN steady client traffic and a slow 10 MiB download WHEN a backend is added, a weight changed, a backend removed and the download's backend drained THEN no request fails, the download completes and the drained backend gets no new flow", async () => {
    const started = Date.now();
    const load = startLoad(l2.client, l2.python, { host: l2.vips.web, port: 80, workers: 4, intervalMs: 10, maxRequests: 40_000, maxSeconds: 170 });
    // a long flow: paced over 160 s at most, sped up (released) once the last update is in place
    const release = `/tmp/tula-release-slow-${Date.now()}`;
    const slow = startDownload(l2.client, l2.python, { host: l2.vips.web, port: 80, path: `/slow?seconds=160&release=${release}`, timeoutSec: 20 });
    let records: LoadRecord[] | undefined;
    try {
      // which backend serves the long flow: its server logs the request
      let drained = '';
      expect(
        await waitFor(
          () => {
            drained = Object.entries(l2.servers).find(([, p]) => p.stdoutText().includes(' /slow '))?.[0] ?? '';
            return drained !== '';
          },
          5000,
          20,
        ),
      ).toBe(true);
      const removed = ['web1', 'web2', 'web3'].find((n) => n !== drained)!;
      const pause = () => new Promise((r) => setTimeout(r, 1000));
      const marks: Record<string, number> = {};

      const weights: Record<string, number> = { web1: 1, web2: 2, web3: 3, web4: 1 };
      const backends = ['web1', 'web2', 'web3', 'web4'];
      await pause();
      const add = await deploy({ backends, weights });
      expect(applySummary(add.stdout)).toMatch(/2 added, 0 changed, 1 destroyed/); // web4 created, lb replaced
      marks.added = Date.now();
      await pause();

      weights.web4 = 3;
      await deploy({ backends, weights });
      marks.weighted = Date.now();
      await pause();

      // The backend leaves the web VIP; its host stays in the stack (it still serves dns and any), so the web VIP's
      // address on its lo retires for 300 s while the flows it has finish. (Deleting a BackendHost construct outright
      // would not run its destroy provisioner: Terraform drops the provisioners of a resource removed from the
      // configuration, so a destroy-time provisioner runs only while its resource is still in the configuration.)
      delete weights[removed];
      const rm = await deploy({ backends, weights });
      expect(applySummary(rm.stdout)).toMatch(/2 added, 0 changed, 2 destroyed/); // its host and lb replaced
      marks.removed = Date.now();
      expect((await byName(removed).exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'lo'])).stdout).toContain(`${l2.vips.web}/32`);
      await pause();

      weights[drained] = 0;
      await deploy({ backends, weights });
      marks.drained = Date.now();
      await new Promise((r) => setTimeout(r, 3000));
      expect(slow.process.isRunning()).toBe(true); // the long flow spans every update
      await byName(drained).exec(['touch', release]);

      const download = await slow.result;
      const all = (records = await load.stop());
      const failed = all.filter((r) => !r.ok);
      const after = (t: number) => all.filter((r: LoadRecord) => r.t0 > t);
      const served = (rs: LoadRecord[]) => rs.reduce<Record<string, number>>((c, r) => ({ ...c, [r.backend ?? '?']: (c[r.backend ?? '?'] ?? 0) + 1 }), {});
      process.stdout.write(
        `zero-downtime: ${all.length} requests, ${failed.length} failed; download ${download.bytes} bytes from ${download.backend} in ${download.ms} ms; ` +
          `drained ${drained}, removed ${removed}; after drain: ${JSON.stringify(served(after(marks.drained)))}; ` +
          `applied at +${Object.entries(marks)
            .map(([k, t]) => `${k} ${((t - started) / 1000).toFixed(1)} s`)
            .join(', ')}\n`,
      );

      expect(failed.slice(0, 5)).toEqual([]);
      expect(all.length).toBeGreaterThanOrEqual(500);
      expect(download.error).toBeUndefined();
      expect(download.backend).toBe(drained);
      expect(download.bytes).toBe(10 * 1024 * 1024);
      // the drained backend gets no new flow once the drain is applied, while its long flow ran to the end
      expect(after(marks.drained).length).toBeGreaterThan(50);
      expect(after(marks.drained).filter((r) => r.backend === drained)).toEqual([]);
      const serverLog = l2.servers[drained].stdoutText().split('\n');
      const lateRequests = serverLog.filter((l) => l.startsWith('REQ ') && Number(l.split(' ')[1]) > marks.drained);
      expect(lateRequests).toEqual([]);
      const end = serverLog.find((l) => /^END \d+ \/slow \d+$/.test(l))?.split(' ');
      expect(end?.[3]).toBe(String(10 * 1024 * 1024));
      expect(Number(end?.[1])).toBeGreaterThan(marks.drained); // the long flow outlived the drain
      // the removed backend got nothing after its removal; the added one got its share
      expect(after(marks.removed).filter((r) => r.backend === removed)).toEqual([]);
      expect(after(marks.added).some((r) => r.backend === 'web4')).toBe(true);
    } finally {
      // a failed step must not leave traffic running into the next tests
      if (!records) await load.stop();
      await slow.process.stop('SIGKILL');
    }
  }, 200_000);

  test('6. GIVEN the deployment WHEN it is destroyed THEN every host is back to its pre-deploy state byte for byte', async () => {
    const destroyed = await ws.terraform(['destroy', '-auto-approve', '-input=false', '-no-color']);
    expectOk('terraform destroy', destroyed);
    expect(applySummary(destroyed.stdout)).toMatch(/^Destroy complete! Resources: \d+ destroyed\.$/);
    const now = await snapshotAll();
    const diffs = Object.keys(baseline).flatMap((h) => diffSnapshots(baseline[h], now[h]));
    expect(diffs).toEqual([]);
  });

  test('9. GIVEN the terraform_data engine, with every trigger map in files and so every spec stored compressed, WHEN the stack is deployed and destroyed THEN traffic is balanced and every host is back to its pre-deploy state', async () => {
    const data = await createWorkspace({
      inventory: l2.inventory,
      inventoryPath: l2.inventoryPath,
      engine: 'terraform_data',
      context: { [TRIGGERS_INLINE_MAX_BYTES_CONTEXT_KEY]: 0 },
    });
    try {
      data.synth(INITIAL);
      const resources = JSON.parse(readFileSync(`${data.stackDir}/cdk.tf.json`, 'utf8')).resource;
      expect(Object.keys(resources)).toEqual(['terraform_data']);
      for (const r of Object.values(resources.terraform_data) as { triggers_replace: unknown }[]) expect(triggersFileOf(r.triggers_replace)).not.toBeNull();
      expectOk('terraform init', await data.terraform(['init', '-input=false', '-no-color']));
      const applied = await data.terraform(['apply', '-auto-approve', '-input=false', '-no-color']);
      expectOk('terraform apply', applied);
      expect(applySummary(applied.stdout)).toBe('Apply complete! Resources: 4 added, 0 changed, 0 destroyed.');
      // the agent got each spec compressed twice (as stored, then by the provisioner) and read it
      const shown = await data.terraform(['show', '-json', '-no-color']);
      expectOk('terraform show', shown);
      const state = JSON.parse(shown.stdout) as { values: { root_module: { resources: { values: { triggers_replace: { spec: string } } }[] } } };
      const specs = state.values.root_module.resources.map((r) => r.values.triggers_replace.spec.slice(0, 4));
      expect(specs).toEqual(Array(4).fill(COMPRESSED_SPEC_PREFIX));

      await flushFlows(l2.lb);
      const burst = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 60 });
      expect(burst.failures).toBe(0);
      expect(burst.counts).toEqual({ web1: 10, web2: 20, web3: 30 });

      const destroyed = await data.terraform(['destroy', '-auto-approve', '-input=false', '-no-color']);
      expectOk('terraform destroy', destroyed);
      expect(applySummary(destroyed.stdout)).toBe('Destroy complete! Resources: 4 destroyed.');
      const now = await snapshotAll();
      expect(Object.keys(baseline).flatMap((h) => diffSnapshots(baseline[h], now[h]))).toEqual([]);
    } finally {
      data.remove();
    }
  });
});
