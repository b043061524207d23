/**
 * Crafted client packets for tests of the balancer's packet path without a client stack: a Python script sends
 * Ethernet frames (TCP with given flags, or UDP) on one end of a veth pair and reports the frames that come back
 * on it, which is where the balancer's `fwd to` the same interface sends them (with the chosen backend's MAC).
 */
import { spawnSync } from 'node:child_process';

export interface CraftedPacket {
  readonly dst: string;
  readonly proto: 'tcp' | 'udp';
  readonly sport: number;
  readonly dport: number;
  /** TCP only: S (SYN), FA (FIN+ACK), R (RST), A (ACK). */
  readonly flags?: 'S' | 'FA' | 'R' | 'A';
}

export interface SeenFrame {
  readonly dstMac: string;
  readonly srcMac: string;
  readonly dst: string;
  readonly proto: 'tcp' | 'udp';
  readonly sport: number;
  readonly dport: number;
  /** TCP flags byte. */
  readonly flags: number;
  /** Bytes from the IP header on: what an nft counter in the netdev ingress hook counts. */
  readonly ipBytes: number;
}

export const TCP_SYN = 0x02;
export const TCP_FIN = 0x01;

const PACKETS_PY = String.raw`
import json, socket, struct, sys, time
iface, src_mac, dst_mac, src_ip = sys.argv[1:5]
packets = json.loads(sys.argv[5])
FLAGS = {'S': 0x02, 'FA': 0x11, 'R': 0x04, 'A': 0x10}
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
mac = lambda m: bytes.fromhex(m.replace(':', ''))
ip4 = socket.inet_aton
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((iface, 0))
s.settimeout(0.05)
for p in packets:
    if p['proto'] == 'tcp':
        num = 6
        l4 = struct.pack('!HHIIBBHHH', p['sport'], p['dport'], 1000, 1, 5 << 4, FLAGS[p['flags']], 65535, 0, 0)
    else:
        num = 17
        l4 = struct.pack('!HHHH', p['sport'], p['dport'], 12, 0) + b'ping'
    c = struct.pack('!H', csum(ip4(src_ip) + ip4(p['dst']) + struct.pack('!BBH', 0, num, len(l4)) + l4))
    l4 = l4[:16] + c + l4[18:] if num == 6 else l4[:6] + c + l4[8:]
    iph = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(l4), 0, 0x4000, 64, num, 0, ip4(src_ip), ip4(p['dst']))
    iph = iph[:10] + struct.pack('!H', csum(iph)) + iph[12:]
    s.send(mac(dst_mac) + mac(src_mac) + b'\x08\x00' + iph + l4)
seen = []
end = time.time() + 0.5
while time.time() < end:
    try:
        data, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or data[23] not in (6, 17):
        continue
    ihl = (data[14] & 15) * 4
    l4 = data[14 + ihl:]
    seen.append({'dstMac': data[0:6].hex(':'), 'srcMac': data[6:12].hex(':'), 'dst': socket.inet_ntoa(data[30:34]),
                 'proto': 'tcp' if data[23] == 6 else 'udp', 'sport': struct.unpack('!H', l4[0:2])[0],
                 'dport': struct.unpack('!H', l4[2:4])[0], 'flags': l4[13] if data[23] == 6 else 0, 'ipBytes': len(data) - 14})
print(json.dumps(seen))
`;

/**
 * Sends `packets` from `iface` inside namespace `ns` (source MAC and address as given, to `dstMac`), then returns the
 * frames that arrive on `iface` during the next half second.
 */
export function sendAndSniff(ns: string, o: { iface: string; srcMac: string; dstMac: string; srcIp: string; packets: readonly CraftedPacket[] }): SeenFrame[] {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'python3', '-c', PACKETS_PY, o.iface, o.srcMac, o.dstMac, o.srcIp, JSON.stringify(o.packets)], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  if (r.status !== 0) throw new Error(`crafted packets failed (exit ${r.status}): ${r.stderr || r.error?.message}`);
  return JSON.parse(r.stdout) as SeenFrame[];
}
