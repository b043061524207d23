/**
 * L3 DSR of IPv6 VIPs (IPv6 in IPv6, ip6tnl) end to end on a real kernel: Debian's cloud kernel under qemu (lab/vm),
 * with the host's own iproute2, nft and sshd inside, deployed with the real `terraform apply` (engine terraform_data),
 * whose provisioners run the agent over SSH. The stack (lab/vm/deploy.ts synthesizeL3Ipv6Stack): web6, TCP, weighted
 * round robin 1:2:3 over be1, be2 and be3; dns6, UDP, round robin.
 *
 * be1 starts with `net.ipv6.conf.default.disable_ipv6=1` (a host that keeps IPv6 off on new devices): its decapsulating
 * device is created with IPv6 off, and only the agent's `disable_ipv6=0` on it lets be1 take its share.
 *
 * Needs root (and apt for qemu, the kernel and busybox on a cold run). Without them every test here fails: the lab
 * refuses to start with a clear message. Nothing is skipped.
 */
import { createL3Workspace, flushFlows, httpBurst, L3_IPV6_WEIGHTS, L3Workspace, nftCounter, RunResult, udpBurst, urlHost } from '../../lab/vm/deploy';
import { DEFAULTS, PROBE_MARK, PROBE_ROUTE_TABLE, PROBE_TABLE, backendId, probeProtocol } from '../../model';
import { balancerRunner, planL3Probes, socatProbe, SocatProbe, startVipOnlyServer, tunnelTxPackets } from '../../lab/vm/probe-path';
import { installProbeRouting, removeProbeRouting } from '../../runtime/probe-routing';
import { startVmLab, VmInventory, VmLab } from '../../lab/vm/vm-lab';
import type { VmHostName } from '../../lab/vm/guest';
import { HOST_SNAPSHOT, assertDistFresh, expectTerraformOk, vmSuite } from '../support/vm-suite';

const TULA_HOSTS = ['lb', 'be1', 'be2', 'be3'] as const;
const BACKENDS = ['be1', 'be2', 'be3'] as const;
/** 1:2:3 over 60 new connections: exactly 10, 20 and 30. */
const REQUESTS = 60;
const POST_BYTES = 300 * 1024;
/** The request path through ip6tnl: a 1500-byte link less the outer IPv6 header (no encapsulation limit option). */
const TUNNEL_MTU = 1460;
/** The port of a TCP service that the backends bind to the web6 VIP only (the lab's httpd listens everywhere). */
const VIP_ONLY_PORT = 9090;

let lab: VmLab | undefined;
let inv: VmInventory;
let ws: L3Workspace | undefined;
const suite = vmSuite();
const { step, timings } = suite;
const before: Record<string, string> = {};

const sh = (host: VmHostName, script: string) => lab!.execOk(host, script);
const terraform = (args: string[]): Promise<RunResult> => ws!.terraform(args, { timeoutMs: 180_000 });
const counter = (host: VmHostName, family: string, table: string, name: string) => nftCounter(lab!, host, family, table, name);
const address6 = (name: string) => inv.backends6.find((b) => b.name === name)!.address6;

interface Ip6tnlLink {
  ifname: string;
  linkinfo: { info_kind: string; info_data: { proto: string; local: string; remote: string; ip6_tnl_f_ign_encap_limit?: boolean } };
}

/** The balancer's ip6tnl tunnels to a backend (the module's fallback device ip6tnl0 has no remote), by remote address. */
async function balancerTunnels(): Promise<Record<string, { name: string; local: string; mode: string; encapLimit: string }>> {
  const links = JSON.parse(await sh('lb', 'ip -d -j link show type ip6tnl')) as Ip6tnlLink[];
  return Object.fromEntries(
    links
      .filter((l) => l.linkinfo.info_data.remote !== 'any')
      .map((l) => [
        l.linkinfo.info_data.remote,
        {
          name: l.ifname,
          local: l.linkinfo.info_data.local,
          mode: l.linkinfo.info_data.proto,
          encapLimit: l.linkinfo.info_data.ip6_tnl_f_ign_encap_limit ? 'none' : 'set',
        },
      ]),
  );
}

/** `count` POSTs of the same 300 KB text body to the web6 VIP: each reply line, or `failed <exit code>`. */
async function postBig(count: number, timeoutSec: number): Promise<{ sent: string; replies: string[] }> {
  const out = await sh(
    'client',
    [
      // text, no NUL bytes: busybox wget --post-file stops at the first NUL
      `yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c ${POST_BYTES} > /tmp/post`,
      'echo "$(sha256sum < /tmp/post | cut -c1-64)"',
      `for i in $(seq ${count}); do timeout ${timeoutSec} wget -q -O - --post-file /tmp/post http://${urlHost(inv.vips6.web)}/cgi-bin/post || echo "failed $?"; done`,
    ].join('\n'),
  );
  const [sent, ...replies] = out.trim().split('\n');
  return { sent, replies };
}

beforeAll(async () => {
  try {
    const started = Date.now();
    assertDistFresh();
    suite.lab = lab = await startVmLab();
    inv = lab.inventory;
    timings['lab start'] = Date.now() - started;
    ws = await createL3Workspace(inv, { family: 6 });
    expectTerraformOk(await terraform(['init', '-input=false', '-no-color']), 'init');
    await sh('be1', 'sysctl -q -w net.ipv6.conf.default.disable_ipv6=1');
    await Promise.all(TULA_HOSTS.map(async (h) => (before[h] = await sh(h, HOST_SNAPSHOT))));
    expect(before.be1).toContain('net.ipv6.conf.default.disable_ipv6 = 1');
    timings['before all'] = Date.now() - started;
  } catch (error) {
    suite.failed = true;
    throw error;
  }
}, 300_000);

afterAll(async () => {
  await lab?.stop({ failed: suite.failed });
  if (ws && !suite.failed) ws.remove();
  else if (ws) process.stderr.write(`l3 ipv6 test: kept ${ws.dir} (terraform state and the synthesized stack)\n`);
  process.stderr.write(`l3 ipv6 test timings (ms): ${JSON.stringify({ ...timings, lab: lab?.timings })}\n`);
}, 60_000);

describe('L3 DSR of IPv6 VIPs (ip6tnl) in the qemu VM lab, deployed with terraform apply', () => {
  step(
    'GIVEN the IPv6 stack WHEN terraform apply runs THEN the balancer has an ip6tnl tunnel and a fwd ip6 rule per backend, and each backend a decapsulating dsr6tnl0, the VIPs on lo, its IPv6 settings and the ip6 MSS clamp',
    240_000,
    async () => {
      const r = await terraform(['apply', '-auto-approve', '-input=false', '-no-color']);
      expectTerraformOk(r, 'apply');
      expect(r.stdout).toMatch(/Apply complete! Resources: 4 added, 0 changed, 0 destroyed/);

      // THEN the balancer: one point-to-point ip6ip6 tunnel per backend, without the encapsulation limit option
      const tunnels = await balancerTunnels();
      expect(Object.keys(tunnels).sort()).toEqual(BACKENDS.map(address6).sort());
      const ruleset = await sh('lb', 'nft list table netdev tula_dsr');
      for (const b of BACKENDS) {
        const t = tunnels[address6(b)];
        expect({ local: t.local, mode: t.mode, encapLimit: t.encapLimit }).toEqual({ local: inv.balancer.address6, mode: 'ip6ip6', encapLimit: 'none' });
        expect(t.name).toMatch(/^tula[0-9a-f]{8}$/);
        expect(ruleset).toContain(`fwd ip6 to ${address6(b)} device "${t.name}"`);
      }
      // AND the balancer owns both VIPs (/128, no duplicate address detection), so that it answers Neighbour Solicitations
      const lbAddrs = await sh('lb', `ip -6 -o addr show dev ${inv.balancer.interface}`);
      for (const vip of [inv.vips6.web, inv.vips6.dns]) expect(lbAddrs).toMatch(new RegExp(`inet6 ${vip}/128 scope global nodad`));

      for (const b of BACKENDS) {
        const link = (JSON.parse(await sh(b, 'ip -d -j link show dev dsr6tnl0')) as Ip6tnlLink[])[0];
        expect(link.linkinfo).toEqual({
          info_kind: 'ip6tnl',
          info_data: expect.objectContaining({ proto: 'ip6ip6', local: address6(b), remote: 'any', ip6_tnl_f_ign_encap_limit: true }),
        });
        // the VIPs are on lo only: IPv6 has no rp_filter, so the decapsulating device needs none
        const lo = await sh(b, 'ip -6 -o addr show dev lo');
        for (const vip of [inv.vips6.web, inv.vips6.dns]) expect(lo).toContain(`inet6 ${vip}/128 scope global`);
        expect(await sh(b, 'ip -6 -o addr show dev dsr6tnl0 scope global')).toBe('');
        const settings = await sh(b, 'for k in disable_ipv6 accept_ra; do echo "$k=$(sysctl -n net.ipv6.conf.dsr6tnl0.$k)"; done');
        expect(settings.trim().split('\n')).toEqual(['disable_ipv6=0', 'accept_ra=0']);
        // nft lists `tcp flags & (syn|ack) == syn|ack` as `tcp flags syn,ack / syn,ack`
        const clamp = DEFAULTS.mssClamp6;
        expect(await sh(b, 'nft list table ip6 tula_dsr_mss')).toContain(
          `ip6 saddr { ${inv.vips6.web}, ${inv.vips6.dns} } tcp flags syn,ack / syn,ack tcp option maxseg size > ${clamp} tcp option maxseg size set ${clamp}`,
        );
        // AND nothing of IPv4's L3 or ARP settings: the host serves IPv6 VIPs only
        expect(await sh(b, 'nft list tables')).not.toContain('table ip tula_dsr_mss');
        expect(await sh(b, 'ip -o link show type ipip')).not.toContain('ipip0');
      }
      expect(before.be1).toMatch(/^net\.ipv4\.conf\.all\.arp_ignore = 0$/m);
      expect(await sh('be1', 'sysctl -n net.ipv4.conf.all.arp_ignore')).toBe('0\n');
      suite.deployed = true;
    },
    false,
  );

  step(`GIVEN weights 1:2:3 WHEN ${REQUESTS} HTTP requests go to the IPv6 VIP THEN they split exactly 10/20/30, and 9 UDP clients 3/3/3`, 180_000, async () => {
    await flushFlows(lab!, 'flows_l3_tcp6');
    const burst = await httpBurst(lab!, { host: inv.vips6.web, port: inv.ports.http, count: REQUESTS });
    const total = L3_IPV6_WEIGHTS.reduce((a, b) => a + b, 0);
    expect(burst).toEqual({
      counts: Object.fromEntries(BACKENDS.map((b, k) => [b, (REQUESTS * L3_IPV6_WEIGHTS[k]) / total])),
      failures: 0,
      errors: [],
    });

    await flushFlows(lab!, 'flows_l3_udp6');
    // socat's socket is connected to the VIP: it takes only answers sourced from the VIP
    const udp = await udpBurst(lab!, { host: inv.vips6.dns, port: inv.ports.udp, count: 9 });
    expect(udp).toEqual({ counts: { be1: 3, be2: 3, be3: 3 }, failures: 0, errors: [] });
  });

  step(
    'GIVEN ICMPv6 "packet too big" dropped on the router WHEN the client POSTs 300 KB THEN it arrives intact (the backends clamp the MSS); without the clamp it hangs while the balancer\'s "packet too big" is dropped, and with that ICMPv6 let through it passes',
    240_000,
    async () => {
      await sh(
        'router',
        [
          "nft add chain inet lab_router toobig '{ type filter hook forward priority -10; policy accept; }'",
          'nft add rule inet lab_router toobig icmpv6 type packet-too-big counter name toobig_dropped drop',
        ].join('\n'),
      );
      try {
        const clamped = await postBig(3, 30);
        expect(clamped.replies.map((r) => r.replace(/^be[123] /, ''))).toEqual(Array(3).fill(`received ${POST_BYTES} bytes ${clamped.sent}`));

        // The control: without the clamp, the client's full-size segments do not fit the tunnel. The balancer answers
        // each with ICMPv6 "packet too big" (unlike IPv4's IPIP on this path, which drops them silently), and the
        // router drops that, so the POST hangs.
        const dropped = await counter('router', 'inet', 'lab_router', 'toobig_dropped');
        const icmpFromVip = await counter('lb', 'netdev', 'lab_watch', 'vip6_icmp_out');
        await Promise.all(BACKENDS.map((b) => sh(b, 'nft delete table ip6 tula_dsr_mss')));
        try {
          expect((await postBig(1, 8)).replies).toEqual(['failed 143']);
          // the balancer owns the VIP, so its "packet too big" leaves from the VIP (the only VIP-sourced packets it sends)
          expect(await counter('router', 'inet', 'lab_router', 'toobig_dropped')).toBeGreaterThan(dropped);
          expect(await counter('lb', 'netdev', 'lab_watch', 'vip6_icmp_out')).toBeGreaterThan(icmpFromVip);

          // AND with "packet too big" let through, path MTU discovery works over IPv6 even without the clamp
          await sh('router', 'nft flush chain inet lab_router toobig');
          const open = await postBig(1, 30);
          expect(open.replies.map((r) => r.replace(/^be[123] /, ''))).toEqual([`received ${POST_BYTES} bytes ${open.sent}`]);
          expect(await sh('client', `ip -6 route get ${inv.vips6.web}`)).toContain(`mtu ${TUNNEL_MTU}`);
        } finally {
          // the boot file restores the very same table, so the agent still finds the host in sync later
          await Promise.all(BACKENDS.map((b) => sh(b, 'nft -f /etc/tula-dsr/backend-mss.nft')));
          await sh('client', 'ip -6 route flush cache');
        }
      } finally {
        await sh('router', 'nft delete chain inet lab_router toobig');
      }
    },
  );

  step('no VIP-sourced packet but its own ICMPv6 errors crosses the balancer; replies reach the client from the backends', 60_000, async () => {
    expect({
      balancerIn: await counter('lb', 'netdev', 'lab_watch', 'vip6_src_in'),
      balancerOut: await counter('lb', 'netdev', 'lab_watch', 'vip6_src_out'),
      routerFromLb: await counter('router', 'inet', 'lab_router', 'vip6_from_lb'),
    }).toEqual({ balancerIn: 0, balancerOut: 0, routerFromLb: 0 });
    // and the traffic really flowed: requests through the balancer, replies from the backends past the router
    expect(await counter('lb', 'netdev', 'lab_watch', 'vip6_dst_in')).toBeGreaterThan(REQUESTS);
    expect(await counter('router', 'inet', 'lab_router', 'vip6_from_backends')).toBeGreaterThan(REQUESTS);
    for (const b of BACKENDS) expect(await counter('lb', 'netdev', 'tula_dsr', `be_${backendId(address6(b))}`)).toBeGreaterThan(0);
  });

  step(
    'GIVEN a router advertisement tunnelled to be1 (dsr6tnl0 decapsulates from any sender) WHEN it arrives THEN be1 takes no route from it; with the kernel default accept_ra=1 the same advertisement installs a default route through the tunnel',
    120_000,
    async () => {
      const tunnel = (await balancerTunnels())[address6('be1')].name;
      // type 134, code 0, checksum (the kernel fills it), hop limit 64, no flags, router lifetime 1800 s; the kernel
      // takes an advertisement only with hop limit 255, which nft sets on its way into the tunnel
      const send = `printf '\\206\\000\\000\\000\\100\\000\\007\\010\\000\\000\\000\\000\\000\\000\\000\\000' | socat -u - 'IP6-SENDTO:[ff02::1%${tunnel}]:58'`;
      const received = async () =>
        (JSON.parse(await sh('be1', 'ip -s -j link show dev dsr6tnl0')) as { stats64: { rx: { packets: number } } }[])[0].stats64.rx.packets;
      const raRoutes = () => sh('be1', 'ip -6 route show proto ra');
      /** Sends one advertisement and waits until be1's dsr6tnl0 has received it (up to 10 s under TCG). */
      const advertise = async () => {
        const before = await received();
        await sh('lb', send);
        for (let i = 0; i < 20 && (await received()) === before; i++) await new Promise((r) => setTimeout(r, 500));
        expect(await received()).toBeGreaterThan(before);
      };
      await sh(
        'lb',
        [
          'nft add table ip6 lab_forge',
          "nft add chain ip6 lab_forge out '{ type filter hook output priority 0; policy accept; }'",
          `nft add rule ip6 lab_forge out oifname ${tunnel} icmpv6 type nd-router-advert ip6 hoplimit set 255`,
        ].join('\n'),
      );
      try {
        await advertise();
        expect(await raRoutes()).toBe('');

        // the control: with the kernel's default, the same advertisement gives be1 a default route into the tunnel
        await sh('be1', 'sysctl -q -w net.ipv6.conf.dsr6tnl0.accept_ra=1');
        try {
          await advertise();
          expect(await raRoutes()).toMatch(/^default via fe80::\S+ dev dsr6tnl0 /m);
        } finally {
          await sh('be1', 'sysctl -q -w net.ipv6.conf.dsr6tnl0.accept_ra=0; ip -6 route flush proto ra || true');
        }
      } finally {
        await sh('lb', 'nft delete table ip6 lab_forge');
      }
    },
  );

  step(
    "GIVEN TCP and UDP checks on the IPv6 VIPs WHEN the runtime's probe routing is installed THEN probes from the probe ports reach a service bound to the web6 VIP only, and the dns6 echo, through each backend's tunnel; ordinary connections to the backends' addresses are refused",
    180_000,
    async () => {
      const plan = planL3Probes(inv, { web: { kind: 'tcp', port: VIP_ONLY_PORT }, dns: { kind: 'udp', payloadHex: '70696e670a' } }, 6);
      expect(plan.targets.map((t) => [t.backend.ip, probeProtocol(t.check), t.check.port, t.via.ip]).sort()).toEqual(
        BACKENDS.flatMap((b) => [
          [address6(b), 'tcp', VIP_ONLY_PORT, inv.vips6.web],
          [address6(b), 'udp', inv.ports.udp, inv.vips6.dns],
        ]).sort(),
      );
      const nameOf = (ip: string) => BACKENDS.find((b) => address6(b) === ip)!;
      const probes = plan.targets.map((t) => ({
        name: nameOf(t.backend.ip),
        probe: { ip: t.backend.ip, port: t.check.port, protocol: probeProtocol(t.check), sourcePort: plan.ports.get(t.key)! } satisfies SocatProbe,
      }));
      const run = balancerRunner(lab!);
      const servers: number[] = [];
      try {
        for (const b of BACKENDS) servers.push(await startVipOnlyServer(lab!, b, inv.vips6.web, VIP_ONLY_PORT));
        await installProbeRouting(plan.routing, run);
        expect((await sh('lb', 'ip -6 rule show')).split('\n').filter((l) => l.includes(`lookup ${PROBE_ROUTE_TABLE}`))).toEqual([
          `1061:\tfrom all fwmark 0x${PROBE_MARK.toString(16)} lookup ${PROBE_ROUTE_TABLE}`,
        ]);
        const tunnels = await balancerTunnels();
        const tx = () => Promise.all(BACKENDS.map((b) => tunnelTxPackets(lab!, tunnels[address6(b)].name)));
        const txBefore = await tx();
        const results = [];
        for (const p of probes) results.push([p.name, p.probe.protocol, await socatProbe(lab!, p.probe)]);
        expect(results).toEqual(
          probes.map((p) => [p.name, p.probe.protocol, { code: 0, reply: p.probe.protocol === 'tcp' ? `${p.name} got ping` : p.name, error: '' }]),
        );
        // through the tunnels: at least a SYN, the data, the reset and a datagram each
        const txAfter = await tx();
        expect(txAfter.map((n, i) => n - txBefore[i] >= 4)).toEqual(BACKENDS.map(() => true));

        // the control: the same services from an ordinary port reach the backends' own addresses, where nothing listens
        for (const p of probes) {
          const plain = await socatProbe(lab!, { ...p.probe, sourcePort: undefined });
          expect({ code: plain.code, reply: plain.reply, refused: /Connection refused/.test(plain.error) }).toEqual({ code: 1, reply: '', refused: true });
        }
      } finally {
        await removeProbeRouting(run);
        if (servers.length) await sh('be1', `kill ${servers.join(' ')}`);
      }
      // the cleanup leaves nothing: no rule, no route, no table (the destroy step compares every host byte for byte)
      expect(await sh('lb', `ip -6 rule show; ip -6 route show table ${PROBE_ROUTE_TABLE}; nft list tables`)).not.toMatch(
        new RegExp(`${PROBE_ROUTE_TABLE}|${PROBE_TABLE}`),
      );
    },
  );

  step(
    'GIVEN be1 loses its runtime state (a reboot) WHEN its boot script runs THEN be1 serves its share again, and re-apply and tula-dsr check find every host in sync',
    180_000,
    async () => {
      // what a reboot loses: the device, the VIPs on lo, the nft table (sysctl.d, the unit and its script stay)
      await sh(
        'be1',
        [
          'ip link del dsr6tnl0',
          `ip addr del ${inv.vips6.web}/128 dev lo`,
          `ip addr del ${inv.vips6.dns}/128 dev lo`,
          'nft delete table ip6 tula_dsr_mss',
        ].join('\n'),
      );
      await sh('be1', 'sh /etc/tula-dsr/backend-up.sh');
      expect(await sh('be1', 'sysctl -n net.ipv6.conf.dsr6tnl0.disable_ipv6 net.ipv6.conf.dsr6tnl0.accept_ra')).toBe('0\n0\n');
      await flushFlows(lab!, 'flows_l3_tcp6');
      const burst = await httpBurst(lab!, { host: inv.vips6.web, port: inv.ports.http, count: 6 });
      expect(burst).toEqual({ counts: { be1: 1, be2: 2, be3: 3 }, failures: 0, errors: [] });

      const r = await terraform(['apply', '-auto-approve', '-input=false', '-no-color']);
      expectTerraformOk(r, 'apply (again)');
      expect(r.stdout).toMatch(/No changes\.|Resources: 0 added, 0 changed, 0 destroyed/);
      const again = await ws!.agent(['apply', ws!.stackDir, '--json']);
      expect({ code: again.code, stderr: again.code ? again.stderr : '' }).toEqual({ code: 0, stderr: '' });
      const results = (JSON.parse(again.stdout) as { results: { host: string; counts: { changed: number; failed: number } }[] }).results;
      expect(results.map((x) => [x.host, x.counts.changed, x.counts.failed]).sort()).toEqual(TULA_HOSTS.map((h) => [h, 0, 0]).sort());
      const check = await ws!.agent(['check', ws!.stackDir]);
      expect({ code: check.code, out: check.code ? `${check.stdout}\n${check.stderr}` : '' }).toEqual({ code: 0, out: '' });
    },
  );

  step('terraform destroy restores every host byte for byte, default.disable_ipv6=1 on be1 included', 240_000, async () => {
    expectTerraformOk(await terraform(['destroy', '-auto-approve', '-input=false', '-no-color']), 'destroy');
    const after: Record<string, string> = {};
    await Promise.all(TULA_HOSTS.map(async (h) => (after[h] = await sh(h, HOST_SNAPSHOT))));
    expect(after).toEqual(before);
    expect(await sh('be1', 'ip link show dsr6tnl0 2>&1 || true')).toMatch(/does not exist/);
  });
});
