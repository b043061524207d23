/**
 * L3 DSR (IPIP) end to end on a real kernel: Debian's cloud kernel under qemu (lab/vm), with the host's own
 * iproute2, nft and sshd inside. The stack is synthesized with the real constructs and deployed with the real
 * `terraform apply` (engine terraform_data: no provider download), whose provisioners run the agent over SSH.
 *
 * The balancer runtime needs Node, which the VM lacks: for health probes through the VIP, the test installs the probe
 * routing the runtime renders for this stack with checks, with the runtime's own install code, and probes with socat.
 *
 * Needs root (and apt for qemu, the kernel and busybox on a cold run). Without them every test here fails: the
 * lab refuses to start with a clear message. Nothing is skipped.
 */
import { createL3Workspace, flushFlows, httpBurst, L3Workspace, nftCounter, RunResult, tally, udpBurst } from '../../lab/vm/deploy';
import { balancerRunner, planL3Probes, reversePathDrops, socatProbe, SocatProbe, startVipOnlyServer, tunnelTxPackets } from '../../lab/vm/probe-path';
import { installProbeRouting, removeProbeRouting } from '../../runtime/probe-routing';
import { PROBE_MARK, PROBE_PORT_COUNT, PROBE_PORT_FIRST, PROBE_ROUTE_TABLE, PROBE_TABLE, probeProtocol, tunnelName } from '../../model';
import { startVmLab, VmInventory, VmLab } from '../../lab/vm/vm-lab';
import type { VmHostName } from '../../lab/vm/guest';
import { HOST_SNAPSHOT, assertDistFresh, expectTerraformOk, vmSuite } from '../support/vm-suite';

const TULA_HOSTS = ['lb', 'be1', 'be2'] as const;
const REQUESTS = 40;
const POST_BYTES = 300 * 1024;
/** The port of a TCP service that the backends bind to the web VIP only (the lab's httpd listens everywhere). */
const VIP_ONLY_PORT = 9090;
const PROBE_PORTS = `${PROBE_PORT_FIRST}-${PROBE_PORT_FIRST + PROBE_PORT_COUNT - 1}`;

let lab: VmLab | undefined;
let inv: VmInventory;
let ws: L3Workspace | undefined;
let stackDir: string;
const suite = vmSuite();
const { step, timings } = suite;
const before: Record<string, string> = {};

const sh = (host: VmHostName, script: string) => lab!.execOk(host, script);

function terraform(args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return ws!.terraform(args, { timeoutMs });
}

/** The agent CLI from dist/ (what the provisioners run), on the synthesized stack. */
function agent(args: string[]): Promise<RunResult> {
  return ws!.agent(args);
}

const SNAPSHOT = HOST_SNAPSHOT;

/** `nft list counter …` → packets. */
function counter(host: VmHostName, family: string, table: string, name: string): Promise<number> {
  return nftCounter(lab!, host, family, table, name);
}

beforeAll(async () => {
  try {
    await setUp();
  } catch (error) {
    suite.failed = true;
    throw error;
  }
}, 300_000);

async function setUp(): Promise<void> {
  const started = Date.now();
  assertDistFresh();
  suite.lab = lab = await startVmLab();
  inv = lab.inventory;
  timings['lab start'] = Date.now() - started;

  // the stack (lab/vm/deploy.ts; web: L3 TCP, weighted round robin 1:3; dns: L3 UDP), synthesized into a temp folder
  // whose node_modules/tula-dsr resolves the provisioners' `require("tula-dsr/agent")` to this checkout
  ws = await createL3Workspace(inv);
  stackDir = ws.stackDir;
  expectTerraformOk(await terraform(['init', '-input=false', '-no-color']), 'init');

  // a host whose all.rp_filter is strict before deploy: tula-dsr must loosen it and restore it on remove
  await sh('be1', 'sysctl -q -w net.ipv4.conf.all.rp_filter=1');
  await Promise.all(TULA_HOSTS.map(async (h) => (before[h] = await sh(h, SNAPSHOT))));
  expect(before.be1).toContain('net.ipv4.conf.all.rp_filter = 1');
  timings['before all'] = Date.now() - started;
}

afterAll(async () => {
  await lab?.stop({ failed: suite.failed });
  if (ws && !suite.failed) ws.remove();
  else if (ws) process.stderr.write(`l3 test: kept ${ws.dir} (terraform state and the synthesized stack)\n`);
  process.stderr.write(`l3 test timings (ms): ${JSON.stringify({ ...timings, lab: lab?.timings })}\n`);
}, 60_000);

describe('L3 DSR (IPIP) in the qemu VM lab, deployed with terraform apply', () => {
  step(
    'terraform apply sets up the balancer tunnels and rules, and ipip0, VIPs, sysctls and the MSS clamp on the backends',
    180_000,
    async () => {
      const r = await terraform(['apply', '-auto-approve', '-input=false', '-no-color']);
      expectTerraformOk(r, 'apply');
      expect(r.stdout).toMatch(/Apply complete! Resources: 3 added, 0 changed, 0 destroyed/);

      const [b1, b2] = inv.backends;
      const lbLinks = JSON.parse(await sh('lb', 'ip -d -j link show type ipip')) as {
        ifname: string;
        linkinfo: { info_data: { local: string; remote: string } };
      }[];
      const tunnels = Object.fromEntries(lbLinks.map((l) => [l.ifname, `${l.linkinfo.info_data.local} -> ${l.linkinfo.info_data.remote}`]));
      expect(tunnels).toMatchObject({ tula0a0a0302: `${inv.balancer.address} -> ${b1.address}`, tula0a0a0402: `${inv.balancer.address} -> ${b2.address}` });
      const ruleset = await sh('lb', 'nft list table netdev tula_dsr');
      expect(ruleset).toContain(`fwd ip to ${b1.address} device "tula0a0a0302"`);
      expect(ruleset).toContain(`fwd ip to ${b2.address} device "tula0a0a0402"`);
      expect(await sh('lb', `ip -br addr show dev ${inv.balancer.interface}`)).toContain(`${inv.vips.web}/32`);

      for (const b of inv.backends) {
        const host = b.name as VmHostName;
        const ipip = JSON.parse(await sh(host, 'ip -d -j link show dev ipip0'))[0] as {
          linkinfo: { info_kind: string; info_data: { local: string; remote?: string } };
        };
        expect(ipip.linkinfo.info_kind).toBe('ipip');
        expect(ipip.linkinfo.info_data.local).toBe(b.address);
        expect(['any', '0.0.0.0', undefined]).toContain(ipip.linkinfo.info_data.remote);
        for (const dev of ['lo', 'ipip0']) {
          const addrs = await sh(host, `ip -br addr show dev ${dev}`);
          expect(addrs).toContain(`${inv.vips.web}/32`);
          expect(addrs).toContain(`${inv.vips.dns}/32`);
        }
        const sysctls = await sh(
          host,
          'for k in all.arp_ignore all.arp_announce all.rp_filter ipip0.rp_filter; do echo "$k=$(sysctl -n net.ipv4.conf.$k)"; done',
        );
        expect(sysctls.trim().split('\n')).toEqual(['all.arp_ignore=1', 'all.arp_announce=2', 'all.rp_filter=2', 'ipip0.rp_filter=2']);
        // nft lists `tcp flags & (syn|ack) == syn|ack` as `tcp flags syn,ack / syn,ack`
        expect(await sh(host, 'nft list table ip tula_dsr_mss')).toContain(
          `ip saddr { ${inv.vips.web}, ${inv.vips.dns} } tcp flags syn,ack / syn,ack tcp option maxseg size > 1440 tcp option maxseg size set 1440`,
        );
      }
      suite.deployed = true;
    },
    false,
  );

  step(`HTTP from client: ${REQUESTS} requests spread 1:3 over be1 and be2`, 120_000, async () => {
    await flushFlows(lab!, 'flows_l3_tcp');
    const burst = await httpBurst(lab!, { host: inv.vips.web, port: inv.ports.http, count: REQUESTS });
    expect(burst).toEqual({ counts: { be1: REQUESTS / 4, be2: (REQUESTS * 3) / 4 }, failures: 0, errors: [] });
  });

  step('1 MiB downloads succeed from both backends', 120_000, async () => {
    const hashes = await sh('router', 'for b in be1 be2; do echo "$(sha256sum < /srv/$b/big | cut -c1-64) $b"; done');
    const owner = Object.fromEntries(
      hashes
        .trim()
        .split('\n')
        .map((l) => l.split(' ')),
    );
    const out = await sh('client', `for i in 1 2 3 4; do timeout 30 wget -q -O - http://${inv.vips.web}/big | sha256sum | cut -c1-64; done`);
    const served = out
      .trim()
      .split('\n')
      .map((h) => owner[h] ?? `corrupt download ${h}`);
    // Every download is intact and both backends served. The exact 1:3 split is the HTTP burst's claim: once in
    // ten runs of the emulated VM (a loaded machine) these four downloads split 2:2; not yet explained (the
    // flow-pinning test proves retransmitted SYNs keep their backend on the real kernel).
    const counts = tally(served.join('\n'));
    expect(Object.keys(counts).sort()).toEqual(['be1', 'be2']);
    expect(counts.be1 + counts.be2).toBe(4);
  });

  step('a 300 KB POST succeeds with ICMP "fragmentation needed" dropped on the router', 120_000, async () => {
    await sh(
      'router',
      [
        "nft add chain inet lab_router fragblock '{ type filter hook forward priority -10; policy accept; }'",
        'nft add rule inet lab_router fragblock icmp type destination-unreachable icmp code frag-needed counter name fragneeded_dropped drop',
      ].join('\n'),
    );
    try {
      const out = await sh(
        'client',
        [
          // text, no NUL bytes: busybox wget --post-file stops at the first NUL
          `yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c ${POST_BYTES} > /tmp/post`,
          'h=$(sha256sum < /tmp/post | cut -c1-64)',
          'echo "sent $h"',
          `for i in 1 2 3 4; do timeout 20 wget -q -O - --post-file /tmp/post http://${inv.vips.web}/cgi-bin/post || { echo "failed $?"; break; }; done`,
        ].join('\n'),
      );
      const [sent, ...replies] = out.trim().split('\n');
      const hash = sent.split(' ')[1];
      expect(replies.map((r) => r.replace(/^be[12] /, ''))).toEqual(Array(4).fill(`received ${POST_BYTES} bytes ${hash}`));
      expect(tally(replies.map((r) => r.split(' ')[0]).join('\n'))).toEqual({ be1: 1, be2: 3 });

      // The control: without the clamp the same POST hangs. The tunnel drops the full-size segments (TX errors) and,
      // on this netdev fwd path, no ICMP "fragmentation needed" is even generated, so nothing can lower the MSS.
      const txErrors = async () =>
        Number(
          JSON.parse(await sh('lb', 'ip -s -j link show type ipip')).reduce(
            (n: number, l: { stats64: { tx: { errors: number } } }) => n + l.stats64.tx.errors,
            0,
          ),
        );
      const errorsBefore = await txErrors();
      await Promise.all(inv.backends.map((b) => sh(b.name as VmHostName, 'nft delete table ip tula_dsr_mss')));
      try {
        expect(await sh('client', `timeout 6 wget -q -O - --post-file /tmp/post http://${inv.vips.web}/cgi-bin/post || echo "failed $?"`)).toBe('failed 143\n');
      } finally {
        // the boot file restores the very same table, so the agent still finds the host in sync later
        await Promise.all(inv.backends.map((b) => sh(b.name as VmHostName, 'nft -f /etc/tula-dsr/backend-mss.nft')));
      }
      expect(await txErrors()).toBeGreaterThan(errorsBefore);
    } finally {
      await sh('router', 'nft delete chain inet lab_router fragblock');
    }
  });

  step('no VIP-sourced packet crosses the balancer; replies reach the client from the backends', 60_000, async () => {
    expect(await counter('lb', 'netdev', 'lab_watch', 'vip_src_in')).toBe(0);
    expect(await counter('lb', 'netdev', 'lab_watch', 'vip_src_out')).toBe(0);
    expect(await counter('router', 'inet', 'lab_router', 'vip_from_lb')).toBe(0);
    // and the traffic really flowed: requests through the balancer, replies from both backends past the router
    expect(await counter('lb', 'netdev', 'lab_watch', 'vip_dst_in')).toBeGreaterThan(REQUESTS);
    expect(await counter('router', 'inet', 'lab_router', 'vip_from_backends')).toBeGreaterThan(REQUESTS);
    expect(await counter('lb', 'netdev', 'tula_dsr', 'be_0a0a0302')).toBeGreaterThan(0);
    expect(await counter('lb', 'netdev', 'tula_dsr', 'be_0a0a0402')).toBeGreaterThan(0);
  });

  step('UDP through an L3 VIP reaches both backends, and the answers come from the VIP', 60_000, async () => {
    await flushFlows(lab!, 'flows_l3_udp');
    // eight clients at once, each from its own fixed source port (a new flow); socat only accepts answers sourced
    // from the VIP; a datagram lost on the emulated VM is sent again from the same port (see udpBurst)
    const udp = await udpBurst(lab!, { host: inv.vips.dns, port: inv.ports.udp, count: 8 });
    expect(udp).toEqual({ counts: { be1: 4, be2: 4 }, failures: 0, errors: [] });
  });

  step("health probes reach a service bound to the VIP only through each backend's tunnel, with strict rp_filter on the balancer", 180_000, async () => {
    // what the runtime would probe and install for this stack with a TCP check (the VIP-only port) and a UDP check
    const plan = planL3Probes(inv, { web: { kind: 'tcp', port: VIP_ONLY_PORT }, dns: { kind: 'udp', payloadHex: '70696e670a' } });
    const [b1, b2] = inv.backends;
    expect(plan.targets.map((t) => [t.backend.ip, probeProtocol(t.check), t.check.port, t.via.ip]).sort()).toEqual([
      [b1.address, 'tcp', VIP_ONLY_PORT, inv.vips.web],
      [b1.address, 'udp', inv.ports.udp, inv.vips.dns],
      [b2.address, 'tcp', VIP_ONLY_PORT, inv.vips.web],
      [b2.address, 'udp', inv.ports.udp, inv.vips.dns],
    ]);
    const probes = plan.targets.map((t) => ({
      name: t.backend.ip === b1.address ? 'be1' : 'be2',
      probe: { ip: t.backend.ip, port: t.check.port, protocol: probeProtocol(t.check), sourcePort: plan.ports.get(t.key)! } satisfies SocatProbe,
    }));
    const run = balancerRunner(lab!);
    const rpFilter = (await sh('lb', 'sysctl -n net.ipv4.conf.all.rp_filter')).trim();
    const servers: number[] = [];
    try {
      for (const b of inv.backends) servers.push(await startVipOnlyServer(lab!, b.name as VmHostName, inv.vips.web, VIP_ONLY_PORT));
      // strict, as RHEL ships it: the replies come from the router on eth0, not back through the tunnel
      await sh('lb', 'sysctl -q -w net.ipv4.conf.all.rp_filter=1');
      // an earlier runtime's retired UDP rule, left by a SIGKILL: the install's cleanup removes it
      await sh('lb', `ip rule add pref 1062 ipproto udp sport ${PROBE_PORTS} lookup ${PROBE_ROUTE_TABLE}`);
      await installProbeRouting(plan.routing, run);
      expect((await sh('lb', 'ip rule show')).split('\n').filter((l) => l.includes(`lookup ${PROBE_ROUTE_TABLE}`))).toEqual([
        `1061:\tfrom all fwmark 0x${PROBE_MARK.toString(16)} lookup ${PROBE_ROUTE_TABLE}`,
      ]);

      const tunnels = inv.backends.map((b) => tunnelName(b.address));
      const txBefore = await Promise.all(tunnels.map((t) => tunnelTxPackets(lab!, t)));
      const vipSourcedBefore = await counter('lb', 'netdev', 'lab_watch', 'vip_src_in');
      const dropsBefore = await reversePathDrops(lab!);
      const results = [];
      for (const p of probes) results.push([p.name, p.probe.protocol, await socatProbe(lab!, p.probe)]);
      expect(results).toEqual(
        probes.map((p) => [p.name, p.probe.protocol, { code: 0, reply: p.probe.protocol === 'tcp' ? `${p.name} got ping` : p.name, error: '' }]),
      );
      // through the tunnels (at least a SYN, the data, the reset and a datagram each), answered from the VIP, none dropped
      const txAfter = await Promise.all(tunnels.map((t) => tunnelTxPackets(lab!, t)));
      const vipSourced = (await counter('lb', 'netdev', 'lab_watch', 'vip_src_in')) - vipSourcedBefore;
      console.log(
        `probes through the VIP: ${probes.length} answered; tunnel TX ${txAfter.map((n, i) => n - txBefore[i]).join(' and ')} packets, ${vipSourced} VIP-sourced replies in`,
      );
      expect(txAfter.map((n, i) => n - txBefore[i] >= 4)).toEqual([true, true]);
      expect(vipSourced).toBeGreaterThanOrEqual(probes.length);
      expect((await reversePathDrops(lab!)) - dropsBefore).toBe(0);

      // the control: the same services from an ordinary port reach the backends' own addresses, where nothing listens
      for (const p of probes) {
        const plain = await socatProbe(lab!, { ...p.probe, sourcePort: undefined });
        expect({ code: plain.code, reply: plain.reply, refused: /Connection refused/.test(plain.error) }).toEqual({ code: 1, reply: '', refused: true });
      }

      // why the rule is on a mark: the earlier rule on the probe ports (with the routes' source set, as it had them)
      // also matches the reverse path check of the reply, which then names the tunnel; strict rp_filter drops it
      for (const b of inv.backends)
        await sh('lb', `ip route replace ${b.address} dev ${tunnelName(b.address)} src ${inv.balancer.address} table ${PROBE_ROUTE_TABLE}`);
      await sh('lb', `ip rule add pref 1062 ipproto tcp sport ${PROBE_PORTS} lookup ${PROBE_ROUTE_TABLE}`);
      const tcp = probes.find((p) => p.probe.protocol === 'tcp')!;
      const dropsOld = await reversePathDrops(lab!);
      const old = await socatProbe(lab!, tcp.probe);
      expect({ code: old.code, reply: old.reply }).toEqual({ code: 1, reply: '' });
      const dropped = (await reversePathDrops(lab!)) - dropsOld;
      console.log(`the earlier rule on the probe ports: the probe failed (${old.error}); ${dropped} replies dropped by rp_filter`);
      expect(dropped).toBeGreaterThan(0);
    } finally {
      await removeProbeRouting(run);
      await sh('lb', `sysctl -q -w net.ipv4.conf.all.rp_filter=${rpFilter}`);
      if (servers.length) await sh('be1', `kill ${servers.join(' ')}`);
    }
    // the cleanup leaves nothing: no rule, no route, no table (the destroy step compares every host byte for byte)
    expect(await sh('lb', `ip rule show; ip route show table ${PROBE_ROUTE_TABLE}; nft list tables`)).not.toMatch(
      new RegExp(`${PROBE_ROUTE_TABLE}|${PROBE_TABLE}`),
    );
  });

  step('re-apply changes nothing, and tula-dsr check reports the stack in sync', 120_000, async () => {
    const r = await terraform(['apply', '-auto-approve', '-input=false', '-no-color']);
    expectTerraformOk(r, 'apply (again)');
    expect(r.stdout).toMatch(/No changes\.|Resources: 0 added, 0 changed, 0 destroyed/);
    const again = await agent(['apply', stackDir, '--json']);
    expect({ code: again.code, stderr: again.code ? again.stderr : '' }).toEqual({ code: 0, stderr: '' });
    const results = (JSON.parse(again.stdout) as { results: { host: string; counts: { changed: number; failed: number } }[] }).results;
    expect(results.map((x) => [x.host, x.counts.changed, x.counts.failed]).sort()).toEqual([
      ['be1', 0, 0],
      ['be2', 0, 0],
      ['lb', 0, 0],
    ]);
    const check = await agent(['check', stackDir]);
    expect({ code: check.code, out: check.code ? `${check.stdout}\n${check.stderr}` : '' }).toEqual({ code: 0, out: '' });
  });

  step('terraform destroy restores every host byte for byte, all.rp_filter=1 included', 180_000, async () => {
    expectTerraformOk(await terraform(['destroy', '-auto-approve', '-input=false', '-no-color']), 'destroy');
    const after: Record<string, string> = {};
    await Promise.all(TULA_HOSTS.map(async (h) => (after[h] = await sh(h, SNAPSHOT))));
    expect(after).toEqual(before);
    expect(await sh('be1', 'sysctl -n net.ipv4.conf.all.rp_filter')).toBe('1\n');
  });
});
