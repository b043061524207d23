import { z } from 'zod';
import { PoolPolicy, poolName } from './nft/pools';

/**
 * What the balancer runtime reports about itself, in `RUNTIME_STATE_FILE` on the balancer. The runtime writes it
 * (atomically) whenever its view changes and at least every few seconds; the agent reads it in its facts, so that an
 * apply renders the backends the runtime has marked down as down, and `tula-dsr stats` shows it.
 */
export const RUNTIME_STATE_FILE = '/var/lib/tula-dsr/runtime-state.json';

const CheckStateSchema = z.object({
  /** The backend's address. */
  backend: z.string(),
  /** The check's identity (see checkKey): the same check on the same backend is probed once for every VIP. */
  check: z.string(),
  kind: z.enum(['tcp', 'http', 'udp']),
  /** The VIP the probe is addressed to (through this backend). */
  vip: z.string(),
  state: z.enum(['up', 'down']),
  /** When the state last changed (epoch seconds). */
  since: z.number(),
  lastProbeAt: z.number().optional(),
  /** Why the last probe failed, in a few words. */
  lastError: z.string().optional(),
  /** Probes run, and how many of them failed, since the runtime started probing this target (absent where an older runtime wrote the file). */
  probes: z.number().optional(),
  failures: z.number().optional(),
});

const PoolStateSchema = z.object({
  /** The pool's id, 8 hex digits (see poolName). */
  id: z.string(),
  vips: z.array(z.string()),
  /** Backends of the pool that the runtime leaves out of new flows because their check failed. */
  down: z.array(z.string()),
  /** Every backend that takes new flows failed its check: the pool keeps sending to all of them (fail open). */
  failOpen: z.boolean(),
  /** When the pool's slot table last changed (epoch seconds). */
  changedAt: z.number(),
});

/** A pair member's flow copy, both ways; counts since the runtime started. */
export const FlowCopyStateSchema = z.object({
  /** The other member's name. */
  peer: z.string(),
  /** Whether a session to the other member's runtime is up (authenticated), and since when (epoch seconds). */
  sending: z.boolean(),
  sendingSince: z.number().optional(),
  /** Flows sent, full copies sent, sessions made. */
  sent: z.number(),
  fullCopies: z.number(),
  sessions: z.number(),
  /** Flows received and written, refused (bad entries), and connections refused (a stranger, a replay, …). */
  received: z.number(),
  refusedEntries: z.number(),
  refusedConnections: z.number(),
});
export type FlowCopyState = z.infer<typeof FlowCopyStateSchema>;

export const RuntimeStateSchema = z.object({
  version: z.literal(1),
  /** sha256 of the runtime configuration the runtime runs with. */
  config: z.string(),
  pid: z.number(),
  startedAt: z.number(),
  updatedAt: z.number(),
  checks: z.array(CheckStateSchema),
  pools: z.array(PoolStateSchema),
  /** Least connections: active connections the runtime infers per pool (id) and backend (address). */
  active: z.record(z.string(), z.record(z.string(), z.number())).optional(),
  /** A pair member's flow copy (see FlowCopyStateSchema). */
  flowCopy: FlowCopyStateSchema.optional(),
});

export type RuntimeState = z.infer<typeof RuntimeStateSchema>;
export type CheckState = z.infer<typeof CheckStateSchema>;
export type PoolState = z.infer<typeof PoolStateSchema>;

/** The runtime's state from the file's text, or null when there is none or it cannot be read as one. */
export function parseRuntimeState(text: string | undefined): RuntimeState | null {
  if (!text?.trim()) return null;
  try {
    const parsed = RuntimeStateSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/**
 * The policy the runtime's state file stands for: a backend a managed pool lists as down takes no new flows, unless
 * the pool fails open. The agent renders with it, so that an apply never brings back a backend the runtime took out.
 */
export function runtimePolicy(state: RuntimeState | null): PoolPolicy {
  const pools = new Map((state?.pools ?? []).map((p) => [p.id, p]));
  return {
    takes: (b, pool) => {
      if (b.weight <= 0) return false;
      const p = pools.get(poolName(pool.id));
      return !p || p.failOpen || !p.down.includes(b.ip);
    },
  };
}
