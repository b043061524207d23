/**
 * A hand-driven flow copy client for the end-to-end tests, run with node inside a lab host (compiled to
 * dist/test/support/flow-copy-peer.js): it connects to a member's runtime with a given host key, then plays one
 * scenario, and prints one JSON line with what it saw. Scenarios:
 *   handshake: shake hands, then wait for the server to close (a stranger's proof is refused);
 *   replay:    a valid ping, then the same bytes again;
 *   flows:     one flows message with the given entries; prints the server's acknowledgement.
 * argv: JSON { address, port, keyFile, pins, scenario, entries? }
 */
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { parseOpenSshEd25519 } from '../../runtime/flow-copy/host-key';
import { ClientHandshake, FrameReader, MAX_FRAME, SecureChannel, frame } from '../../runtime/flow-copy/protocol';

interface Args {
  readonly address: string;
  readonly port: number;
  readonly keyFile: string;
  readonly pins: string[];
  readonly scenario: 'handshake' | 'replay' | 'flows';
  readonly entries?: unknown[];
}

function main(args: Args): void {
  const key = parseOpenSshEd25519(readFileSync(args.keyFile, 'utf8'));
  const handshake = new ClientHandshake(key, args.pins);
  const socket = net.connect({ host: args.address, port: args.port });
  const reader = new FrameReader();
  const seen: unknown[] = [];
  let channel: SecureChannel | null = null;
  const done = (result: object) => {
    process.stdout.write(JSON.stringify({ ...result, seen }) + '\n');
    socket.destroy();
    process.exit(0);
  };
  setTimeout(() => done({ timeout: true }), 8000).unref();
  socket.on('connect', () => socket.write(frame(handshake.hello())));
  socket.on('data', (chunk: Buffer) => {
    for (const body of reader.push(chunk)) {
      if (!channel) {
        const { reply, keys } = handshake.welcome(body);
        socket.write(frame(reply));
        channel = new SecureChannel(keys);
        reader.limit = MAX_FRAME;
        if (args.scenario === 'replay') {
          const ping = frame(channel.seal({ t: 'ping' }));
          socket.write(ping);
          setTimeout(() => socket.write(ping), 300);
        } else if (args.scenario === 'flows') {
          socket.write(frame(channel.seal({ t: 'flows', full: false, e: args.entries ?? [] })));
        }
      } else {
        const message = channel.open(body);
        seen.push(message);
        if (args.scenario === 'flows' && message.t === 'ack') done({ ack: message });
      }
    }
  });
  socket.on('close', () => done({ closed: true }));
  socket.on('error', (error) => done({ error: error.message }));
}

main(JSON.parse(process.argv[2]) as Args);
