/**
 * IPv6 L2 DSR end to end in the namespace lab, applied by the real agent over SSH: the lab's hosts carry addresses in
 * a ULA /64 of their own beside their IPv4 ones, and one balancer serves an IPv4 and IPv6 VIP of the same hosts (dual
 * stack: one MAC per host for both families). Real sshd, nft, kernel neighbour discovery and HTTP/UDP traffic.
 *
 * Needs root (network namespaces). Without it this file FAILS: it never skips silently.
 */
import { createL2Lab, L2Lab } from '../../lab/l2/lab';
import { flushFlows, httpBurst, measureByteShare, startLoad, udpBurst } from '../../lab/l2/traffic';
import { LabHost } from '../../lab/topology';
import { RUNTIME_STATE_FILE, StatsJson, StatsJsonDocument, parseRuntimeState } from '../../model';
import { TASK_LINE, assertDistFresh, backendSpec, balancerSpec, leftovers, run, runCli, sh, writeSpec } from '../agent/helpers';

jest.setTimeout(180_000);

let l2: L2Lab;
let vip4: string;
let vip6: string;
let dns6: string;

/** The balancer's spec: web4 (IPv4) and web6 (IPv6) over the three backends with these weights, dns6 (UDP). */
function lbSpec(weights4: readonly number[], weights6: readonly number[]) {
  const backends = (weights: readonly number[], six: boolean) => l2.backends.map((b, i) => ({ name: b.name, ip: six ? b.ip6 : b.ip, weight: weights[i] }));
  const spec = balancerSpec(
    l2.lab,
    l2.lb,
    [
      { name: 'web4', ip: vip4, port: 80, backends: backends(weights4, false) },
      { name: 'web6', ip: vip6, port: 80, backends: backends(weights6, true) },
    ],
    { ipv6Subnet: l2.lab.subnet6 },
  );
  (spec.vips as Record<string, unknown>[]).push({
    path: 'lab/dns6',
    name: 'dns6',
    ip: dns6,
    port: 5353,
    protocol: 'udp',
    algorithm: 'round-robin',
    backends: l2.backends.map((b) => ({ path: `lab/dns6/${b.name}`, name: b.name, ip: b.ip6 })),
  });
  return spec;
}

const beSpec = (b: LabHost) =>
  backendSpec(l2.lab, b, [
    { ip: vip4, port: 80, path: 'lab/web4' },
    { ip: vip6, port: 80, path: 'lab/web6' },
    { ip: dns6, port: 5353, protocol: 'udp', path: 'lab/dns6' },
  ]);

async function applyOk(spec: unknown): Promise<string[]> {
  const result = await run(spec, 'apply');
  expect({ error: result.error, failed: result.tasks.filter((t) => t.status === 'failed') }).toEqual({ error: undefined, failed: [] });
  return TASK_LINE(result);
}

beforeAll(async () => {
  assertDistFresh();
  l2 = await createL2Lab({ backends: 3 });
  vip4 = l2.vips.web;
  const prefix = l2.lab.subnet6.replace(/\/64$/, '');
  vip6 = `${prefix}64`;
  dns6 = `${prefix}65`;
});

afterAll(async () => {
  await l2?.teardown();
});

/** Polls `done` every 200 ms until it holds, or fails naming `what` after `ms`. */
async function waitFor(what: string, done: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${ms} ms; the runtime's log:\n${await sh(l2.lb, 'tail -n 20 /var/log/tula-dsr-runtime.log 2>&1 || true')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('IPv6 L2 DSR in the namespace lab', () => {
  test('GIVEN three dual-stack backends WHEN the backends and the balancer are applied THEN the IPv6 VIP is on lo (/128) of each backend, which never answers Neighbour Solicitations for it, and on the balancer with nodad, deprecated (never a source address)', async () => {
    for (const b of l2.backends) {
      const lines = await applyOk(beSpec(b));
      expect(lines).toContain(`changed: address ${vip6}/128 dev lo`);
    }
    const lines = await applyOk(lbSpec([1, 2, 3], [1, 2, 3]));
    for (const b of l2.backends) expect(lines).toContain(`ok: backend MAC ${b.ip6}`);
    expect(lines).toContain(`changed: address ${vip6}/128 dev eth0`);
    // THEN the balancer's VIP is usable at once (not tentative)
    expect(await sh(l2.lb, `ip -6 -o addr show dev eth0 to ${vip6}/128`)).not.toMatch(/tentative/);
    // AND deprecated, so that the balancer's own packets to its /64 (health probes, pings) leave from its own address: a
    // /128 VIP would win the kernel's source address selection, and a backend, which has the VIP on lo, answer itself
    expect(await sh(l2.lb, `ip -6 -o addr show dev eth0 to ${vip6}/128`)).toMatch(/ deprecated /);
    expect(await sh(l2.lb, `ip -6 route get ${l2.backends[0].ip6}`)).toContain(` src ${l2.lb.ip6} `);
    // AND the facts see it deprecated: applying the same spec again changes nothing
    expect((await applyOk(lbSpec([1, 2, 3], [1, 2, 3]))).filter((l) => !l.startsWith('ok: '))).toEqual([]);
    // WHEN the client resolves the VIP afresh, with every host counting the Neighbour Advertisements it sends for it
    const advertised = `table ip6 t16_na { chain out { type filter hook output priority 0; policy accept; ip6 saddr ${vip6} icmpv6 type nd-neighbor-advert counter; }; }`;
    const hosts = [l2.lb, ...l2.backends];
    for (const h of hosts)
      await sh(
        h,
        `nft -f - <<'EOF'
${advertised}
EOF`,
      );
    await sh(l2.client, 'ip -6 neigh flush dev eth0');
    await sh(l2.client, `ping -6 -c 1 -W 2 ${vip6} >/dev/null || true`);
    const advertisements = async (h: LabHost) => Number(/packets (\d+)/.exec(await sh(h, 'nft list chain ip6 t16_na out'))![1]);
    const counts = Object.fromEntries(await Promise.all(hosts.map(async (h) => [h.name, await advertisements(h)] as const)));
    for (const h of hosts) await sh(h, 'nft delete table ip6 t16_na');
    // THEN only the balancer answered (a VIP on lo needs no sysctl for IPv6), and the client sends the VIP to its MAC
    expect(counts).toEqual({ lb: 1, web1: 0, web2: 0, web3: 0 });
    expect(await sh(l2.client, `ip -6 neigh show ${vip6} dev eth0`)).toContain(`lladdr ${l2.lb.mac}`);
  });

  test('GIVEN weights 1:2:3 WHEN 600 HTTP requests go to the IPv6 VIP THEN they split exactly 100/200/300, and 300 UDP datagrams 100/100/100, answered from the VIP', async () => {
    await flushFlows(l2.lb, 'flows_l2_tcp6');
    const burst = await httpBurst(l2.client, l2.python, { host: vip6, port: 80, count: 600, concurrency: 4 });
    expect(burst).toMatchObject({ counts: { web1: 100, web2: 200, web3: 300 }, failures: 0 });
    const udp = await udpBurst(l2.client, l2.python, { host: dns6, port: 5353, count: 300 });
    expect(udp).toMatchObject({ counts: { web1: 100, web2: 100, web3: 100 }, failures: 0 });
    // AND `tula-dsr stats` names the same split for the IPv6 pools, and none of it for the IPv4 VIP on the same hosts
    const stats = await runCli(['stats', '--spec', writeSpec(l2.lab, lbSpec([1, 2, 3], [1, 2, 3])), '--json']);
    expect(stats.code).toBe(0);
    const doc = JSON.parse(stats.stdout) as StatsJsonDocument;
    const pools = (doc.balancers[0] as StatsJson).pools;
    const newFlows = (vip: string) => pools.find((p) => p.vips.includes(vip))!.backends.map((b) => `${b.name} ${b.address} ${b.newFlows}`);
    expect(newFlows('web6')).toEqual(l2.backends.map((b, i) => `${b.name} ${b.ip6} ${100 * (i + 1)}`));
    expect(newFlows('dns6')).toEqual(l2.backends.map((b) => `${b.name} ${b.ip6} 100`));
    expect(newFlows('web4')).toEqual(l2.backends.map((b) => `${b.name} ${b.ip} 0`));
    // AND each IPv6 VIP counts its own packets, in its element of vip_stats_port6: no counter of the spec is missing
    const balancer = doc.balancers[0] as StatsJson;
    expect(balancer.missingCounters).toEqual([]);
    expect(balancer.vips.find((v) => v.name === 'web6')!.packets).toBeGreaterThanOrEqual(600 * 3);
    expect(balancer.vips.find((v) => v.name === 'dns6')!.packets).toBeGreaterThanOrEqual(300);
  });

  test('GIVEN the IPv6 VIP WHEN the client downloads 10 MiB through it THEN the balancer sees a tiny share of the bytes (the reply bypasses it)', async () => {
    const share = await measureByteShare(l2.client, l2.lb, l2.python, { host: vip6, port: 80 });
    expect(share.download).toMatchObject({ status: 200, bytes: 10 * 1024 * 1024 });
    console.log(`IPv6 byte share: balancer ${share.balancerBytes} B of the client's ${share.clientBytes} B = ${(share.share * 100).toFixed(2)}%`);
    expect(share.share).toBeLessThan(0.05);
  });

  test('GIVEN load on the IPv4 and the IPv6 VIP WHEN both VIPs change weights in one apply THEN no request fails on either, and each new split is exact', async () => {
    const load4 = startLoad(l2.client, l2.python, { host: vip4, port: 80, maxRequests: 5000, maxSeconds: 60 });
    const load6 = startLoad(l2.client, l2.python, { host: vip6, port: 80, maxRequests: 5000, maxSeconds: 60 });
    await new Promise((r) => setTimeout(r, 1000));
    const lines = await applyOk(lbSpec([3, 2, 1], [1, 1, 1]));
    expect(lines).toContain('changed: nft table netdev tula_dsr (3 VIPs)');
    await new Promise((r) => setTimeout(r, 1000));
    const [records4, records6] = await Promise.all([load4.stop(), load6.stop()]);
    for (const records of [records4, records6]) {
      expect(records.length).toBeGreaterThan(20);
      expect(records.filter((r) => !r.ok)).toEqual([]);
    }
    console.log(`dual-stack apply under load: ${records4.length} IPv4 and ${records6.length} IPv6 requests, 0 failed`);
    await flushFlows(l2.lb, 'flows_l2_tcp');
    await flushFlows(l2.lb, 'flows_l2_tcp6');
    expect(await httpBurst(l2.client, l2.python, { host: vip4, port: 80, count: 600 })).toMatchObject({
      counts: { web1: 300, web2: 200, web3: 100 },
      failures: 0,
    });
    expect(await httpBurst(l2.client, l2.python, { host: vip6, port: 80, count: 600 })).toMatchObject({
      counts: { web1: 200, web2: 200, web3: 200 },
      failures: 0,
    });
  });

  test('GIVEN a TCP check on a port that only a service bound to the IPv6 VIP answers (on web1) WHEN the balancer is applied with it THEN the runtime probes each backend through the VIP over IPv6: web1 up, the others down; and web1 goes down when that service stops', async () => {
    const web1 = l2.backends[0];
    const server = web1.spawn([
      l2.python,
      '-c',
      `import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('${vip6}',9090))\ns.listen(64)\nwhile True:\n  c,_=s.accept(); c.close()`,
    ]);
    try {
      // the backend's own IPv6 address does not answer on 9090: only a probe through the VIP can pass
      await waitFor('the VIP-bound server listening', async () => (await web1.exec(`ss -Htln 'sport = :9090'`)).stdout.includes(vip6));
      expect((await l2.lb.exec(`timeout 2 bash -c 'echo > /dev/tcp/${web1.ip6}/9090'`)).code).not.toBe(0);
      const spec = lbSpec([3, 2, 1], [1, 1, 1]);
      (spec.vips as Record<string, unknown>[]).find((v) => v.name === 'web6')!.healthCheck = {
        kind: 'tcp',
        port: 9090,
        intervalSec: 0.5,
        timeoutSec: 0.3,
        fall: 3,
        rise: 2,
      };
      await applyOk(spec);
      // the runtime installs the probe routing for IPv6: a rule on the probe mark and the backends' routes in table 61000
      await waitFor('the IPv6 probe rule', async () => /^1061:\tfrom all fwmark 0xee48 lookup 61000$/m.test(await sh(l2.lb, 'ip -6 rule show')));
      expect(await sh(l2.lb, 'ip -6 route show table 61000')).toContain(`${web1.ip6} via ${web1.ip6} dev eth0`);

      const states = async () =>
        (parseRuntimeState(await sh(l2.lb, `cat ${RUNTIME_STATE_FILE} 2>/dev/null || true`))?.checks ?? []).map((c) => `${c.backend} ${c.state}`).sort();
      const expected = (web1State: string) => [`${web1.ip6} ${web1State}`, ...l2.backends.slice(1).map((b) => `${b.ip6} down`)].sort();
      await waitFor('web1 up through the VIP, web2 and web3 down', async () => JSON.stringify(await states()) === JSON.stringify(expected('up')), 15_000);

      await server.stop('SIGKILL');
      await waitFor('web1 down once its VIP-bound service stopped', async () => JSON.stringify(await states()) === JSON.stringify(expected('down')), 15_000);
    } finally {
      await server.stop('SIGKILL');
    }

    // AND without the check again, the runtime stops and its IPv6 probe routing goes with it
    await applyOk(lbSpec([3, 2, 1], [1, 1, 1]));
    expect(await sh(l2.lb, 'ip -6 rule show; ip -6 route show table 61000; nft list tables')).not.toMatch(/61000|tula_dsr_probe/);
  });

  test('GIVEN the balancer and a backend lose their VIP addresses (a reboot) WHEN their boot scripts run THEN one ip -batch puts every address back as the agent adds it: the IPv6 VIP nodad and deprecated on the balancer, on lo on the backend', async () => {
    const vips = [`${vip4}/32`, `${vip6}/128`, `${dns6}/128`];
    const [web1] = l2.backends;
    const vipLines = async (host: LabHost, dev: string) =>
      (await sh(host, `ip -o addr show dev ${dev}`))
        .split('\n')
        .filter((l) => [vip4, vip6, dns6].some((ip) => l.includes(` ${ip}/`)))
        .map((l) => l.replace(/^\d+: +/, '').replace(/\\ +valid_lft.*$/, ''));
    const before = { lb: await vipLines(l2.lb, 'eth0'), web1: await vipLines(web1, 'lo') };
    expect(before.lb).toHaveLength(3);
    expect(before.web1).toHaveLength(3);
    await sh(l2.lb, vips.map((a) => `ip addr del ${a} dev eth0`).join('; '));
    await sh(web1, vips.map((a) => `ip addr del ${a} dev lo`).join('; '));
    expect([await vipLines(l2.lb, 'eth0'), await vipLines(web1, 'lo')]).toEqual([[], []]);

    // the balancer's script also reloads its table, which would reset what the running runtime keeps there: only
    // the address restore is under test, so its `nft` is a stand-in here
    await sh(
      l2.lb,
      "d=$(mktemp -d) && printf '#!/bin/sh\\nexit 0\\n' > $d/nft && chmod +x $d/nft && PATH=$d:$PATH sh /etc/tula-dsr/balancer-up.sh; rc=$?; rm -rf $d; exit $rc",
    );
    await sh(web1, 'sh /etc/tula-dsr/backend-up.sh');
    for (const [host, script] of [
      [l2.lb, '/etc/tula-dsr/balancer-up.sh'],
      [web1, '/etc/tula-dsr/backend-up.sh'],
    ] as const) {
      // one ip process for the addresses, none per address
      expect((await sh(host, `grep -c -e '| ip -batch -$' -e '^ip addr' ${script} || true`)).trim()).toBe('1');
    }
    expect(await vipLines(l2.lb, 'eth0')).toEqual(before.lb);
    expect(await vipLines(l2.lb, 'eth0')).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`${vip6}/128 .*nodad.*deprecated`))]));
    expect(await vipLines(web1, 'lo')).toEqual(before.web1);
    // and the agent finds both hosts as it left them
    expect((await applyOk(lbSpec([3, 2, 1], [1, 1, 1]))).filter((l) => !l.startsWith('ok: '))).toEqual([]);
    expect((await applyOk(beSpec(web1))).filter((l) => !l.startsWith('ok: '))).toEqual([]);
  });

  test('GIVEN the applied lab WHEN remove runs on the balancer and the backends THEN every IPv6 address tula-dsr added is gone and nothing of tula-dsr is left', async () => {
    const removed = await run(lbSpec([3, 2, 1], [1, 1, 1]), 'remove');
    expect(removed.error).toBeUndefined();
    expect(await sh(l2.lb, 'ip -6 -o addr show dev eth0')).not.toContain(vip6);
    for (const b of l2.backends) {
      const r = await run(beSpec(b), 'remove');
      expect(r.error).toBeUndefined();
      expect(await sh(b, 'ip -6 -o addr show dev lo')).not.toContain(vip6);
      expect(await leftovers(b)).toEqual([]);
    }
    expect(await leftovers(l2.lb)).toEqual([]);
  });
});
