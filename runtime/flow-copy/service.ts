/**
 * A pair member's flow copy: the receiver of the other member's flows and the sender of its own, started from the
 * runtime configuration and reconfigured when the agent installs a new one.
 */
import { readFileSync } from 'node:fs';
import { FlowCopyState, FlowEntryChecker, RuntimeConfig } from '../../model';
import type { Logger } from '../log';
import { NftRunner, runCommand } from '../nft';
import type { NftLister } from './flow-maps';
import { HostKey, parseOpenSshEd25519 } from './host-key';
import { FlowCopyReceiver } from './receiver';
import { FlowCopySender } from './sender';

export interface FlowCopyDeps {
  readonly nft: NftRunner;
  readonly list: NftLister;
  readonly log: Logger;
  readonly now: () => number;
  readonly readFile?: (path: string) => string;
}

/** `nft -f -` with list commands, through `prefix` (tests: `ip netns exec NS`). */
export function systemNftLister(prefix: readonly string[] = []): NftLister {
  return async (input) => {
    const r = await runCommand([...prefix, 'nft', '-f', '-'], input);
    if (r.code !== 0) throw new Error(`nft exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  };
}

/** The flow maps a configuration's table has: one per (mode, protocol) of its IPv4 VIPs. */
const flowMapsOf = (config: RuntimeConfig) =>
  FlowCopySender.mapsOf([...new Set(config.balancer.vips.filter((v) => !v.ip.includes(':')).map((v) => `flows_${v.mode}_${v.protocol}`))]);

export class FlowCopyService {
  private receiver: FlowCopyReceiver | null = null;
  private sender: FlowCopySender | null = null;
  private hostKey: HostKey | null = null;

  constructor(private readonly deps: FlowCopyDeps) {}

  /** For the state file: how the copy goes both ways; undefined when this is no pair member (or its key is unusable). */
  status(): FlowCopyState | undefined {
    if (!this.sender || !this.peer) return undefined;
    const sent = this.sender.stats;
    const received = this.receiver?.stats ?? { received: 0, refusedEntries: 0, refusedConnections: 0 };
    return {
      peer: this.peer,
      sending: this.sender.connected,
      ...(this.sender.connected && sent.since !== undefined && { sendingSince: sent.since }),
      sent: sent.sentEntries,
      fullCopies: sent.fullCopies,
      sessions: sent.sessions,
      ...received,
    };
  }

  private peer: string | undefined;

  /** Starts, reconfigures or stops the copy to match `config` (no `flowCopy`: not a pair member). */
  async configure(config: RuntimeConfig): Promise<void> {
    const copy = config.flowCopy;
    if (!copy) return this.stop();
    if (!this.hostKey) {
      try {
        this.hostKey = parseOpenSshEd25519((this.deps.readFile ?? ((p) => readFileSync(p, 'utf8')))(copy.hostKeyFile));
      } catch (error) {
        this.deps.log(
          'error',
          `flow copy: off: cannot use the host key ${copy.hostKeyFile} (${(error as Error).message}); the other member would reschedule established flows after a failover`,
        );
        return;
      }
      this.deps.log('info', `flow copy: this member proves its host key ${this.hostKey.fingerprint}`);
    }
    this.peer = copy.peer.name;
    const checker = new FlowEntryChecker(config.balancer, config.facts);
    if (this.receiver) await this.receiver.reconfigure(copy, checker);
    else {
      const receiver = new FlowCopyReceiver(copy, checker, this.hostKey, this.deps);
      try {
        await receiver.start();
        this.receiver = receiver;
      } catch (error) {
        // the sender goes on; the next configuration (SIGHUP, an apply) tries the listener again
        this.deps.log('error', `flow copy: cannot listen on ${copy.listen.address}:${copy.listen.port}: ${(error as Error).message}`);
      }
    }
    if (this.sender) this.sender.reconfigure(copy, flowMapsOf(config));
    else {
      this.sender = new FlowCopySender(copy, flowMapsOf(config), this.hostKey, this.deps);
      this.sender.start();
    }
  }

  async stop(): Promise<void> {
    this.sender?.stop();
    this.sender = null;
    await this.receiver?.stop();
    this.receiver = null;
  }
}
