import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { ProbeOptions, ProbeResult, attempt, describeError } from './attempt';

export interface UdpProbe {
  readonly payloadHex: string;
  /** Bytes a reply must contain; any reply passes without it. */
  readonly expectHex?: string;
}

/**
 * Sends the payload from a connected socket (only datagrams from the probed address count) and passes on the first
 * reply that contains the expected bytes. A reply without them is not a failure yet: a late answer to an earlier
 * probe from the same source port may come first; the probe fails when the time runs out.
 */
export function probeUdp(probe: UdpProbe, options: ProbeOptions, timeoutMs: number): Promise<ProbeResult> {
  const payload = Buffer.from(probe.payloadHex, 'hex');
  const expected = probe.expectHex !== undefined ? Buffer.from(probe.expectHex, 'hex') : undefined;
  return attempt(timeoutMs, options.signal, (settle) => {
    let replies = 0;
    const socket = createSocket(isIPv6(options.host) ? 'udp6' : 'udp4');
    // a connected UDP socket learns of an ICMP port unreachable as ECONNREFUSED
    socket.on('error', (error: NodeJS.ErrnoException) => settle(false, error.code === 'ECONNREFUSED' ? 'port unreachable' : describeError(error, options)));
    socket.on('message', (message) => {
      replies += 1;
      if (!expected || message.includes(expected)) settle(true);
    });
    socket.bind({ port: options.localPort ?? 0, address: options.localAddress, exclusive: true }, () => {
      socket.connect(options.port, options.host, () => socket.send(payload, (error) => error && settle(false, describeError(error, options))));
    });
    return {
      dispose: () => {
        socket.removeAllListeners('error');
        socket.on('error', () => {});
        try {
          socket.close();
        } catch {
          // already closed
        }
      },
      timeoutReason: (ms) =>
        replies === 0 ? `no reply within ${ms} ms` : `${replies} ${replies === 1 ? 'reply' : 'replies'} within ${ms} ms, none containing ${probe.expectHex}`,
    };
  });
}
