/**
 * The sending side of the flow copy: connects to the other member's runtime, proves this member's host key and checks
 * the other's, sends every flow of the flow maps once (a full copy at each (re)connect), then lists the `recent_*` maps
 * every intervalMs and sends what is new there. A session whose peer stops acknowledging is dropped and made again.
 */
import * as net from 'node:net';
import { COPIED_FLOW_MAPS, FlowCopyConfig, FlowEntry, flowCopyMapsOf } from '../../model';
import type { Logger } from '../log';
import { NftLister, forgetCommands, listFlows } from './flow-maps';
import type { HostKey } from './host-key';
import { ClientHandshake, FrameReader, MAX_ENTRIES_PER_MESSAGE, MAX_FRAME, ProtocolError, SecureChannel, frame } from './protocol';

/** Without an acknowledgement for this long, the session is taken for dead (a peer gone, or its interface down). */
export const ACK_TIMEOUT_MS = 2_000;
const PING_EVERY_MS = 500;
/** A connection attempt to a peer that does not answer (its interface down) is given up after this, and made again. */
const CONNECT_TIMEOUT_MS = 1_000;
const RECONNECT_MS = 250;

export interface SenderDeps {
  readonly list: NftLister;
  readonly log: Logger;
  readonly now: () => number;
}

const wire = (e: FlowEntry) => [e.map, e.saddr, e.sport, e.daddr, e.dport, e.value];
const keyOf = (e: FlowEntry) => `${e.map} ${e.saddr} ${e.sport} ${e.daddr} ${e.dport}`;

export class FlowCopySender {
  private socket: net.Socket | null = null;
  private channel: SecureChannel | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private listing = false;
  private lastAck = 0;
  private lastSent = 0;
  /** What the last listing of the recent maps held, as sent: key → value. */
  private sent = new Map<string, string>();
  private lastProblem = '';
  /** Counts for the state file and tests. */
  readonly stats = { sessions: 0, sentEntries: 0, fullCopies: 0, since: undefined as number | undefined };

  /** Whether a session is up now. */
  get connected(): boolean {
    return this.channel !== null;
  }

  constructor(
    private config: FlowCopyConfig,
    private maps: readonly string[],
    private readonly hostKey: HostKey,
    private readonly deps: SenderDeps,
  ) {}

  /** The flow maps the balancer has (IPv4 ones: see COPIED_FLOW_MAPS); the recent maps come with them. */
  static mapsOf(tableMaps: readonly string[]): string[] {
    return COPIED_FLOW_MAPS.filter((m) => tableMaps.includes(m));
  }

  reconfigure(config: FlowCopyConfig, maps: readonly string[]): void {
    const moved =
      config.peer.address !== this.config.peer.address || config.peer.port !== this.config.peer.port || config.peerKeys.join() !== this.config.peerKeys.join();
    const newMaps = maps.join() !== this.maps.join();
    this.config = config;
    this.maps = maps;
    // a new table or a new peer: a full copy again
    if (moved || newMaps) this.drop('the configuration changed');
  }

  start(): void {
    this.stopped = false;
    this.connect();
    this.timer = setInterval(() => void this.tick(), this.config.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.socket?.destroy();
  }

  private problem(why: string): void {
    // one line per kind of problem, not one per attempt
    if (why !== this.lastProblem)
      this.deps.log('warn', `flow copy: cannot send to ${this.config.peer.name} (${this.config.peer.address}:${this.config.peer.port}): ${why}`);
    this.lastProblem = why;
  }

  private drop(why: string): void {
    if (this.socket && this.channel) this.deps.log('info', `flow copy: session with ${this.config.peer.name} ended: ${why}`);
    this.socket?.destroy();
  }

  private connect(): void {
    if (this.stopped) return;
    const { address, port } = this.config.peer;
    const socket = net.connect({ host: address, port, localAddress: this.config.listen.address, timeout: CONNECT_TIMEOUT_MS });
    this.socket = socket;
    socket.setNoDelay(true);
    const reader = new FrameReader();
    const handshake = new ClientHandshake(this.hostKey, this.config.peerKeys);
    socket.on('connect', () => socket.write(frame(handshake.hello())));
    socket.on('timeout', () => (this.channel ? undefined : socket.destroy(new Error('no handshake in time'))));
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const body of reader.push(chunk)) {
          if (!this.channel) {
            const { reply, keys } = handshake.welcome(body);
            socket.write(frame(reply));
            this.channel = new SecureChannel(keys);
            reader.limit = MAX_FRAME;
            this.lastAck = this.deps.now();
            this.stats.sessions++;
            this.stats.since = Math.floor(this.deps.now() / 1000);
            this.lastProblem = '';
            this.deps.log('info', `flow copy: sending to ${this.config.peer.name} (${address}:${port}), authenticated by its host key ${keys.peerFingerprint}`);
            void this.fullCopy();
          } else {
            const m = this.channel.open(body);
            if (m.t !== 'ack') throw new ProtocolError(`expected an ack, got ${JSON.stringify(m.t)}`);
            this.lastAck = this.deps.now();
          }
        }
      } catch (error) {
        socket.destroy(error instanceof ProtocolError ? error : new Error(`unexpected: ${(error as Error).message}`));
      }
    });
    socket.on('error', (error) => this.problem(error.message));
    socket.on('close', () => {
      if (this.socket === socket) {
        this.socket = null;
        if (this.channel) this.deps.log('info', `flow copy: session with ${this.config.peer.name} closed`);
        this.channel = null;
        this.sent.clear();
      }
      if (!this.stopped) setTimeout(() => this.connect(), RECONNECT_MS).unref();
    });
  }

  private send(entries: readonly FlowEntry[], full: boolean): void {
    if (!this.channel || !this.socket) return;
    for (let i = 0; i < entries.length || (i === 0 && full); i += MAX_ENTRIES_PER_MESSAGE) {
      const chunk = entries.slice(i, i + MAX_ENTRIES_PER_MESSAGE);
      this.socket.write(frame(this.channel.seal({ t: 'flows', full, e: chunk.map(wire) })));
      this.stats.sentEntries += chunk.length;
      if (!entries.length) break;
    }
    this.lastSent = this.deps.now();
  }

  /**
   * Every flow of the flow maps, once per session: the peer then holds what this member held when it connected. The
   * recent maps go on being sent meanwhile: listing 100,000 flows takes seconds, and the flows opened in those seconds
   * must not wait for it.
   */
  private async fullCopy(): Promise<void> {
    const channel = this.channel;
    try {
      const entries = await listFlows(this.deps.list, this.maps);
      if (this.channel !== channel) return;
      this.send(entries, true);
      this.stats.fullCopies++;
      this.deps.log('info', `flow copy: full copy of ${entries.length} flows sent to ${this.config.peer.name}`);
    } catch (error) {
      this.drop(`listing the flow maps failed: ${(error as Error).message}`);
    }
  }

  /** The recent maps' new entries; a ping when there was nothing to send for a while; a silent peer dropped. */
  private async tick(): Promise<void> {
    if (!this.channel || this.listing) return;
    const now = this.deps.now();
    if (now - this.lastAck > ACK_TIMEOUT_MS) return this.drop(`no acknowledgement for ${now - this.lastAck} ms`);
    const channel = this.channel;
    this.listing = true;
    try {
      const recent = this.maps.map((m) => flowCopyMapsOf(m).recent);
      const toFlowMap = new Map(this.maps.map((m) => [flowCopyMapsOf(m).recent, m]));
      const listed = await listFlows(this.deps.list, recent, (m) => toFlowMap.get(m) ?? m);
      if (this.channel !== channel) return;
      const fresh = listed.filter((e) => this.sent.get(keyOf(e)) !== e.value);
      this.sent = new Map(listed.map((e) => [keyOf(e), e.value]));
      if (fresh.length) this.send(fresh, false);
      else if (this.deps.now() - this.lastSent >= PING_EVERY_MS) {
        this.socket?.write(frame(channel.seal({ t: 'ping' })));
        this.lastSent = this.deps.now();
      }
      // sent: out of the recent maps (an nft run without the host lock: an agent's reload leaves these maps alone)
      if (listed.length) await this.deps.list(forgetCommands(listed.map((entry) => ({ map: flowCopyMapsOf(entry.map).recent, entry })))).catch(() => undefined);
    } catch (error) {
      this.problem(`listing the recent flows failed: ${(error as Error).message}`);
    } finally {
      this.listing = false;
    }
  }
}
