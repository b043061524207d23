/**
 * Connection set-ups in flight at once in this process. Every handshake's key exchange runs on Node's one main
 * thread, so 100 started together finish together, late: each one's timeout (which starts with its attempt) then
 * measures our own queue instead of the host, and hosts fail with "timed out" under load (measured: 100 hosts from
 * one CLI on a shared 2-core machine, 6 of 100 timed out at 10 s). Waiting for a slot before the attempt keeps
 * the timeout about the host; the CPU work, and so the total time, stays the same.
 */
export const MAX_CONCURRENT_HANDSHAKES = 24;

export class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(size: number) {
    this.free = size;
  }

  /** Resolves once a slot is free; call the returned function exactly once to give it back. */
  async take(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/** The process-wide slots of connect(): the CLI and the agent daemon serve every host from one process. */
export const handshakeSlots = new Slots(MAX_CONCURRENT_HANDSHAKES);
