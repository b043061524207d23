/**
 * The receiving side of the flow copy: a TCP server on the member's own address that accepts only the other member
 * (its address, then the proof that it holds the pinned host key), checks every entry against the pair's VIPs and
 * their backends, and writes the good ones into the flow maps with their VIP's timeout. Whatever it refuses, it logs.
 */
import * as net from 'node:net';
import { FlowCopyConfig, FlowEntry, FlowEntryChecker } from '../../model';
import type { Logger } from '../log';
import type { NftRunner } from '../nft';
import { writeFlows } from './flow-maps';
import type { HostKey } from './host-key';
import { FrameReader, MAX_ENTRIES_PER_MESSAGE, MAX_FRAME, ProtocolError, SecureChannel, ServerHandshake, frame } from './protocol';

/** A peer that has not finished the handshake by then is dropped. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/** The sender sends at least a ping a second; a session silent this long is dropped (its sender reconnects). */
export const IDLE_TIMEOUT_MS = 5_000;

export const plainAddress = (a: string | undefined) => (a ?? '').replace(/^::ffff:(?=\d+\.)/, '');

export interface ReceiverDeps {
  readonly nft: NftRunner;
  readonly log: Logger;
}

/** Parses one wire entry: `[map, saddr, sport, daddr, dport, value]`. */
function wireEntry(raw: unknown): FlowEntry | null {
  if (!Array.isArray(raw) || raw.length !== 6) return null;
  const [map, saddr, sport, daddr, dport, value] = raw as unknown[];
  if (typeof map !== 'string' || typeof saddr !== 'string' || typeof daddr !== 'string' || typeof value !== 'string') return null;
  if (typeof sport !== 'number' || typeof dport !== 'number') return null;
  return { map, saddr, sport, daddr, dport, value };
}

export class FlowCopyReceiver {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  /** Counts for the state file: flows written, entries and connections refused. */
  readonly stats = { received: 0, refusedEntries: 0, refusedConnections: 0 };
  /** Writes run one after another, in the order received. */
  private writing: Promise<unknown> = Promise.resolve();

  constructor(
    private config: FlowCopyConfig,
    private checker: FlowEntryChecker,
    private readonly hostKey: HostKey,
    private readonly deps: ReceiverDeps,
  ) {}

  reconfigure(config: FlowCopyConfig, checker: FlowEntryChecker): Promise<void> {
    const moved = config.listen.address !== this.config.listen.address || config.listen.port !== this.config.listen.port;
    this.config = config;
    this.checker = checker;
    return moved ? this.stop().then(() => this.start()) : Promise.resolve();
  }

  start(): Promise<void> {
    const { address, port } = this.config.listen;
    return new Promise((resolve, reject) => {
      const server = net.createServer((socket) => this.accept(socket));
      server.once('error', reject);
      server.listen({ host: address, port }, () => {
        server.off('error', reject);
        server.on('error', (error) => this.deps.log('error', `flow copy: the listener on ${address}:${port} failed: ${error.message}`));
        this.server = server;
        this.deps.log('info', `flow copy: taking ${this.config.peer.name}'s flows on ${address}:${port}`);
        resolve();
      });
    });
  }

  stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = null;
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  private accept(socket: net.Socket): void {
    const from = `${plainAddress(socket.remoteAddress)}:${socket.remotePort}`;
    const refuse = (why: string) => {
      this.stats.refusedConnections++;
      this.deps.log('warn', `flow copy: refused ${from}: ${why}`);
      socket.destroy();
    };
    if (plainAddress(socket.remoteAddress) !== this.config.peer.address)
      return refuse(`not the address of ${this.config.peer.name} (${this.config.peer.address})`);
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    const reader = new FrameReader();
    const handshake = new ServerHandshake(this.hostKey, this.config.peerKeys);
    let channel: SecureChannel | null = null;
    let step: 'hello' | 'auth' | 'session' = 'hello';
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => refuse(step === 'session' ? `silent for ${IDLE_TIMEOUT_MS} ms` : 'no handshake in time'));
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const body of reader.push(chunk)) {
          if (step === 'hello') {
            socket.write(frame(handshake.hello(body)));
            step = 'auth';
          } else if (step === 'auth') {
            channel = new SecureChannel(handshake.auth(body));
            step = 'session';
            reader.limit = MAX_FRAME;
            socket.setTimeout(IDLE_TIMEOUT_MS);
            this.deps.log('info', `flow copy: ${this.config.peer.name} (${from}) authenticated by its host key ${channel.peerFingerprint}`);
          } else {
            this.message(channel!, channel!.open(body), socket, from);
          }
        }
      } catch (error) {
        refuse(error instanceof ProtocolError ? error.message : `unexpected: ${(error as Error).message}`);
      }
    });
  }

  private message(channel: SecureChannel, message: Record<string, unknown>, socket: net.Socket, from: string): void {
    if (message.t === 'ping') return void socket.write(frame(channel.seal({ t: 'ack' })));
    if (message.t !== 'flows' || !Array.isArray(message.e) || message.e.length > MAX_ENTRIES_PER_MESSAGE)
      throw new ProtocolError(`a message that is neither a ping nor at most ${MAX_ENTRIES_PER_MESSAGE} flows`);
    const good: (FlowEntry & { timeoutSec: number })[] = [];
    const problems: string[] = [];
    for (const raw of message.e) {
      const entry = wireEntry(raw);
      const verdict = entry ? this.checker.check(entry) : { problem: `${JSON.stringify(raw)}: not [map, saddr, sport, daddr, dport, value]` };
      if ('problem' in verdict) problems.push(verdict.problem);
      else good.push({ ...entry!, timeoutSec: verdict.timeoutSec });
    }
    this.stats.refusedEntries += problems.length;
    if (problems.length)
      this.deps.log(
        'warn',
        `flow copy: refused ${problems.length} of ${message.e.length} entries from ${from}: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? '; …' : ''}`,
      );
    this.writing = this.writing.then(async () => {
      const failed = await writeFlows(this.deps.nft, good);
      this.stats.received += good.length - failed;
      if (failed) this.deps.log('warn', `flow copy: nft refused ${failed} of ${good.length} flows from ${from}`);
      if (!socket.destroyed) socket.write(frame(channel.seal({ t: 'ack', written: good.length - failed, refused: problems.length })));
    });
  }
}
