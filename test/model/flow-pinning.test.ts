/**
 * The balancer's flow pinning, packet by packet on the real kernel. The reload form of a rendered ruleset is loaded
 * into a network namespace whose eth0 is a veth; a second namespace sends hand-made TCP frames (python3, AF_PACKET)
 * into it, and the flow maps and the per-backend counters tell where each one went. It proves that a retransmitted
 * SYN keeps its backend, that a connection the client ended (FIN or RST) frees its 4-tuple for a new connection
 * scheduled afresh while its last packets still reach its backend, that a SYN on a reused 4-tuple leaves a drained
 * backend, and that the established flow on that backend keeps going. In L2 and L3.
 *
 * Needs root (network namespaces, nftables, raw sockets). Without it this file FAILS: it never skips silently.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BALANCER_TABLE, BalancerSpec, backendId, groupPools, poolClassid, planBalancerHost, renderNftReload, tunnelName } from '../../model';
import { BALANCER_CASES, FRESH, factsFor, macOf, pairMember } from '../support/render-fixtures';
import { parseNftTableText } from '../../agent/facts/parsers';

const suffix = randomBytes(3).toString('hex');
const LB = `tula-fp-${suffix}`;
const CLIENT = `tula-fp-${suffix}-c`;
const CLIENT_IF = `fpc${suffix}`;
const CLIENT_IP = '192.0.2.7';
let workDir = '';

function run(argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  if (r.error) throw new Error(`${argv.join(' ')}: ${r.error.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function must(argv: string[]): string {
  const r = run(argv);
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

const inLb = (...argv: string[]) => must(['ip', 'netns', 'exec', LB, ...argv]);

/** Sends one Ethernet/IPv4/TCP frame from the client namespace into the balancer's eth0. */
const SENDER = `
import socket, struct, sys
iface, dmac, src, dst, sport, dport, flags = sys.argv[1:8]
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 1, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
tcp = struct.pack('!HHIIBBHHH', int(sport), int(dport), 1000, 0, 5 << 4, int(flags, 0), 65535, 0, 0)
frame = bytes.fromhex(dmac.replace(':', '')) + bytes.fromhex('020000000099') + b'\\x08\\x00' + ip + tcp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
s.send(frame)
`;

const SYN = '0x02';
const ACK = '0x10';
const FIN_ACK = '0x11';
const RST = '0x04';
const RST_ACK = '0x14';

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('flow-pinning tests need root (network namespaces, nft, raw sockets); run them as root');
  workDir = mkdtempSync(path.join(os.tmpdir(), 'tula-fp-'));
  writeFileSync(path.join(workDir, 'send.py'), SENDER);
  must(['ip', 'netns', 'add', LB]);
  must(['ip', 'netns', 'add', CLIENT]);
  must(['ip', '-n', LB, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', CLIENT_IF, 'netns', CLIENT]);
  must(['ip', '-n', LB, 'link', 'set', 'eth0', 'up']);
  must(['ip', '-n', CLIENT, 'link', 'set', CLIENT_IF, 'up']);
});

afterAll(() => {
  for (const ns of [LB, CLIENT]) run(['ip', 'netns', 'del', ns]);
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

const lbMac = () => (JSON.parse(inLb('ip', '-j', 'link', 'show', 'eth0')) as { address: string }[])[0].address;

function send(vip: string, sport: number, flags: string): void {
  must(['ip', 'netns', 'exec', CLIENT, 'python3', path.join(workDir, 'send.py'), CLIENT_IF, lbMac(), CLIENT_IP, vip, String(sport), '80', flags]);
}

function load(spec: BalancerSpec): void {
  const table = planBalancerHost(spec, factsFor(spec)).table;
  // the first load starts from nothing; later ones reload in place from what the agent's facts parser reads
  const listed = run(['ip', 'netns', 'exec', LB, 'nft', '-t', 'list', 'table', 'netdev', BALANCER_TABLE]);
  const facts = listed.status === 0 ? parseNftTableText(listed.stdout) : FRESH;
  const file = path.join(workDir, `r${randomBytes(3).toString('hex')}.nft`);
  writeFileSync(file, renderNftReload(table, facts));
  inLb('nft', '-f', file);
}

/** The value a flow map (open flows, or closing ones) holds for the client's 4-tuple (a MAC in L2, a mark in L3). */
function flowValue(mode: 'l2' | 'l3', vip: string, sport: number, map: 'flows' | 'closing' | 'recent' = 'flows'): string | undefined {
  const text = inLb('nft', 'list', 'map', 'netdev', BALANCER_TABLE, `${map}_${mode}_tcp`);
  const key = `${CLIENT_IP} . ${sport} . ${vip} . 80`.replace(/\./g, '\\.');
  return new RegExp(`${key}(?: timeout \\S+)?(?: expires \\S+)? : (\\S+?)[,\\s}]`).exec(text)?.[1];
}

const counterPackets = (name: string) => Number(/packets (\d+)/.exec(inLb('nft', 'list', 'counter', 'netdev', BALANCER_TABLE, name))![1]);
const packets = (backendIp: string) => counterPackets(`be_${backendId(backendIp)}`);
/** Flows the client ended (FIN or RST) on a backend of a VIP's pool, as that (pool, backend) element counts them. */
function ended(spec: BalancerSpec, backendIp: string): number {
  const mode = spec.vips[0].mode;
  const element = `${poolClassid(groupPools(spec.vips)[0].id)} . ${mode === 'l2' ? macOf(backendIp) : `0x${backendId(backendIp)}`}`;
  const listing = inLb('nft', 'list', 'set', 'netdev', BALANCER_TABLE, `pool_ended_${mode}`);
  const count = new RegExp(`${element.replace(/\./g, '\\.')} counter packets (\\d+)`).exec(listing);
  if (!count) throw new Error(`no element ${element} in pool_ended_${mode}:\n${listing}`);
  return Number(count[1]);
}

describe.each(['l2', 'l3'] as const)('%s: flows stay pinned, drained backends get no new flow', (mode) => {
  const base = BALANCER_CASES.find((c) => c.name === `${mode} round-robin`)!.spec;
  const spec: BalancerSpec = { ...base, interface: 'eth0', vips: base.vips.filter((v) => v.protocol === 'tcp') };
  const vip = spec.vips[0];
  const valueOf = (ip: string) => (mode === 'l2' ? macOf(ip) : `0x${backendId(ip)}`);
  const backendOf = (value: string | undefined) => vip.backends.find((b) => valueOf(b.ip) === value)?.ip;
  const counts = () => Object.fromEntries(vip.backends.map((b) => [b.ip, packets(b.ip)]));

  beforeAll(() => {
    run(['ip', 'netns', 'exec', LB, 'nft', 'delete', 'table', 'netdev', BALANCER_TABLE]);
    // L3 forwards into one IPIP device per backend; veths stand in (the build kernel has no ipip module)
    if (mode === 'l3') {
      for (const b of vip.backends) {
        const dev = tunnelName(b.ip);
        if (run(['ip', '-n', LB, 'link', 'show', dev]).status !== 0) {
          must(['ip', '-n', LB, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', `p${dev}`.slice(0, 15)]);
          must(['ip', '-n', LB, 'link', 'set', dev, 'up']);
        }
      }
    }
    load(spec);
  });

  test('GIVEN a SYN scheduled to a backend WHEN it is retransmitted THEN it goes to the same backend', () => {
    const before = counts();
    send(vip.ip, 41000, SYN);
    const first = backendOf(flowValue(mode, vip.ip, 41000));
    expect(first).toBeDefined();
    send(vip.ip, 41000, SYN);
    send(vip.ip, 41000, SYN);
    expect(backendOf(flowValue(mode, vip.ip, 41000))).toBe(first);
    const after = counts();
    // round robin would have moved each new SYN on: all three reached the same backend
    expect(Object.fromEntries(vip.backends.map((b) => [b.ip, after[b.ip] - before[b.ip]]))).toEqual(
      Object.fromEntries(vip.backends.map((b) => [b.ip, b.ip === first ? 3 : 0])),
    );
  });

  test.each([
    ['FIN', FIN_ACK],
    ['RST', RST],
    ['RST+ACK', RST_ACK],
  ])('GIVEN a connection the client ends with %s WHEN a new SYN reuses its 4-tuple THEN round robin schedules it to the next backend', (_what, flags) => {
    send(vip.ip, 44000, SYN);
    const first = backendOf(flowValue(mode, vip.ip, 44000))!;
    expect(first).toBeDefined();
    send(vip.ip, 44000, ACK);
    const endedBefore = ended(spec, first);
    send(vip.ip, 44000, flags);
    // the flow left the open flows for the closing ones, and the backend's ended counter counted it once
    expect(flowValue(mode, vip.ip, 44000)).toBeUndefined();
    expect(backendOf(flowValue(mode, vip.ip, 44000, 'closing'))).toBe(first);
    expect(ended(spec, first) - endedBefore).toBe(1);

    send(vip.ip, 44000, SYN);
    const second = backendOf(flowValue(mode, vip.ip, 44000));
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    // and it is a connection like any other: its retransmitted SYN stays
    send(vip.ip, 44000, SYN);
    expect(backendOf(flowValue(mode, vip.ip, 44000))).toBe(second);
    // end it too, so the next case starts from no open flow on this 4-tuple
    send(vip.ip, 44000, RST);
  });

  test('GIVEN the client sent its FIN WHEN its last ACK and a retransmitted FIN follow THEN they reach the same backend', () => {
    send(vip.ip, 45000, SYN);
    const backend = backendOf(flowValue(mode, vip.ip, 45000))!;
    send(vip.ip, 45000, FIN_ACK);
    const before = counts();
    const endedBefore = ended(spec, backend);
    send(vip.ip, 45000, ACK);
    send(vip.ip, 45000, FIN_ACK);
    send(vip.ip, 45000, ACK);
    const after = counts();
    expect(Object.fromEntries(vip.backends.map((b) => [b.ip, after[b.ip] - before[b.ip]]))).toEqual(
      Object.fromEntries(vip.backends.map((b) => [b.ip, b.ip === backend ? 3 : 0])),
    );
    // a retransmitted FIN is not a second ended connection
    expect(ended(spec, backend) - endedBefore).toBe(0);
  });

  test("GIVEN a backend drained WHEN a SYN reuses its flow's 4-tuple THEN it is scheduled to a live backend, while another flow on the drained backend goes on", () => {
    // two flows: one whose 4-tuple a new connection reuses after the drain, one that stays established
    send(vip.ip, 42000, SYN);
    const drained = backendOf(flowValue(mode, vip.ip, 42000))!;
    let sport = 43000;
    do send(vip.ip, ++sport, SYN);
    while (backendOf(flowValue(mode, vip.ip, sport)) !== drained && sport < 43010);
    expect(backendOf(flowValue(mode, vip.ip, sport))).toBe(drained);
    const established = sport;

    load({ ...spec, vips: [{ ...vip, backends: vip.backends.map((b) => (b.ip === drained ? { ...b, weight: 0 } : b)) }] });
    const before = counts();
    send(vip.ip, established, ACK);
    expect(backendOf(flowValue(mode, vip.ip, established))).toBe(drained);
    expect(packets(drained) - before[drained]).toBe(1);

    send(vip.ip, 42000, SYN);
    const moved = backendOf(flowValue(mode, vip.ip, 42000));
    expect(moved).toBeDefined();
    expect(moved).not.toBe(drained);
    expect(packets(drained) - before[drained]).toBe(1);
    // and its retransmission stays on the new backend
    send(vip.ip, 42000, SYN);
    expect(backendOf(flowValue(mode, vip.ip, 42000))).toBe(moved);
  });
});

describe('a pair member notes its flows for the copy to the other member', () => {
  const base = BALANCER_CASES.find((c) => c.name === 'l2 round-robin')!.spec;
  const spec: BalancerSpec = pairMember({ ...base, interface: 'eth0', vips: base.vips.filter((v) => v.protocol === 'tcp') });
  const vip = spec.vips[0];
  const seen = (sport: number) => inLb('nft', 'list', 'set', 'netdev', BALANCER_TABLE, 'seen_l2_tcp').includes(`${CLIENT_IP} . ${sport} . ${vip.ip} . 80 `);
  const forget = (map: string, sport: number) =>
    inLb('nft', 'delete', 'element', 'netdev', BALANCER_TABLE, map, `{ ${CLIENT_IP} . ${sport} . ${vip.ip} . 80 }`);

  beforeAll(() => {
    run(['ip', 'netns', 'exec', LB, 'nft', 'delete', 'table', 'netdev', BALANCER_TABLE]);
    load(spec);
  });

  test('GIVEN a new connection THEN its flow is noted in recent_l2_tcp with its backend, and in seen_l2_tcp for a third of its timeout', () => {
    send(vip.ip, 46000, SYN);
    const backend = flowValue('l2', vip.ip, 46000);
    expect(backend).toBeDefined();
    expect(flowValue('l2', vip.ip, 46000, 'recent')).toBe(backend);
    expect(inLb('nft', 'list', 'set', 'netdev', BALANCER_TABLE, 'seen_l2_tcp')).toMatch(
      new RegExp(`${CLIENT_IP} \\. 46000 \\. ${vip.ip.replace(/\./g, '\\.')} \\. 80 timeout 1m40s`),
    );
  });

  test('GIVEN a noted flow WHEN its packets go on THEN it is not noted again until its seen entry expires; then its next packet notes it again', () => {
    send(vip.ip, 47000, SYN);
    const backend = flowValue('l2', vip.ip, 47000);
    forget('recent_l2_tcp', 47000);
    send(vip.ip, 47000, ACK);
    // still within a third of its timeout: the copy on the other member is fresh enough
    expect(flowValue('l2', vip.ip, 47000, 'recent')).toBeUndefined();
    forget('seen_l2_tcp', 47000);
    send(vip.ip, 47000, ACK);
    expect(flowValue('l2', vip.ip, 47000, 'recent')).toBe(backend);
    expect(seen(47000)).toBe(true);
  });

  test('GIVEN a flow copied from the other member (in flows_l2_tcp only) WHEN its packets arrive after a failover THEN they keep its backend, and it is noted for the copy back', () => {
    // without the entry, a mid-stream packet would go where the pinned-seed hash points
    const copied = macOf(vip.backends[2].ip);
    inLb('nft', 'add', 'element', 'netdev', BALANCER_TABLE, 'flows_l2_tcp', `{ ${CLIENT_IP} . 48000 . ${vip.ip} . 80 timeout 300s : ${copied} }`);
    const before = packets(vip.backends[2].ip);
    send(vip.ip, 48000, ACK);
    expect(packets(vip.backends[2].ip) - before).toBe(1);
    expect(flowValue('l2', vip.ip, 48000, 'recent')).toBe(copied);
  });
});
