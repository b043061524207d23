import { z } from 'zod';
import { fastParse } from '../model/fast-parse';

/**
 * What tula-dsr records on each host, so that `remove` undoes exactly what `apply` did: the generation (hash of
 * the spec) that is live, everything tula-dsr created, and the sysctl values the host had before tula-dsr first
 * changed them.
 */
export const STATE_DIR = '/var/lib/tula-dsr';
export const LOCK_FILE = '/run/tula-dsr.lock';
export const statePath = (kind: 'balancer' | 'backend') => `${STATE_DIR}/${kind}.json`;

/** `retiredAt`: when the spec stopped wanting the address (epoch seconds on the host); it goes after a grace period. */
const AddressSchema = z.object({ ip: z.string(), prefix: z.number(), dev: z.string(), retiredAt: z.number().optional() });
const TunnelSchema = z.object({ name: z.string(), local: z.string(), remote: z.string() });

/**
 * Version 2 records no spec: version 1 carried the whole spec text (≈ 6 MB for 10,000 VIPs × 4 backends), which
 * travelled back in every run's facts and was written again by every change, only for the incremental update to build
 * the previous table from it; that table is now read back from the boot ruleset the last apply wrote, checked against
 * the recorded ruleset hash (see planTableTask). A version 1 file is read as it is (its spec ignored) and the run's
 * state task writes it again as version 2.
 */
export const STATE_VERSION = 2;

export const HostStateSchema = z.object({
  version: z.literal([1, STATE_VERSION]),
  kind: z.enum(['balancer', 'backend']),
  name: z.string(),
  generation: z.string(),
  /** Version 1 only: the spec of the live generation (JSON text). Nothing reads it. */
  spec: z.string().optional(),
  addresses: z.array(AddressSchema),
  tunnels: z.array(TunnelSchema),
  files: z.array(z.string()),
  /** Directories tula-dsr created; removed again when empty. */
  dirs: z.array(z.string()),
  /** sysctl key → value before tula-dsr first changed it (null: the key did not exist). */
  originalSysctls: z.record(z.string(), z.string().nullable()),
  modules: z.array(z.string()),
  /**
   * nft tables tula-dsr owns on this host, keyed "family name": the hash of the ruleset it loaded and of the
   * live listing right after loading it (a later difference means someone edited the table).
   */
  nft: z.record(z.string(), z.object({ rulesetHash: z.string(), listingHash: z.string() })),
  unit: z.object({ name: z.string(), enabled: z.boolean() }).nullable(),
  /**
   * The balancer runtime tula-dsr started, and how: systemd's unit, or its own supervisor (see RUNTIME_PID_FILE); and
   * the statistics textfile it writes, which goes when the runtime stops for good or writes it no more.
   */
  runtime: z.object({ service: z.enum(['systemd', 'supervisor']), statsTextfile: z.string().optional() }).optional(),
  /** The keepalived of a balancer pair member that tula-dsr started: through its unit, or directly (no systemd). */
  keepalived: z.object({ service: z.enum(['systemd', 'direct']) }).optional(),
});

export type HostState = z.infer<typeof HostStateSchema>;
export type StateAddress = z.infer<typeof AddressSchema>;

/**
 * Reads a state file (or journal): a missing file (`undefined`) means tula-dsr has not configured this host. A file
 * that is there but unreadable is a problem, never "not configured": taking it so would record tula-dsr's own
 * sysctl values as the host's originals and make remove leave behind what the lost file recorded.
 */
export function readHostState(text: string | undefined): { state: HostState | null } | { problem: string } {
  if (text === undefined) return { state: null };
  if (!text.trim()) return { problem: 'it is empty (a write that never reached the disk?)' };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return { problem: `it is not valid JSON (${(error as Error).message})` };
  }
  // a backend's state lists every VIP address: the fast path, and zod only to word what is wrong
  const fast = fastParse(HostStateSchema, data);
  if (fast) return { state: fast.value };
  const parsed = HostStateSchema.safeParse(data);
  if (parsed.success) return { state: parsed.data };
  const issue = parsed.error.issues[0];
  return { problem: `it is not a state file this tula-dsr can read (${issue.path.join('.') || '(root)'}: ${issue.message})` };
}

/**
 * The journal: the state a run is about to create, written before its first change and removed once the state file
 * records the run. A run killed outright (SIGKILL, power loss) cannot roll back; its journal still tells the next
 * run which sysctl values were the host's originals and what that run may have created.
 */
export const journalPath = (path: string) => `${path}.journal`;

const union = <T>(a: readonly T[], b: readonly T[], key: (x: T) => string = String): T[] => {
  const seen = new Set(a.map(key));
  return [...a, ...b.filter((x) => !seen.has(key(x)))];
};

/** The recorded state completed by an interrupted run's journal: the older record wins where both have a value. */
export function mergeJournal(state: HostState | null, journal: HostState): HostState {
  if (!state) return journal;
  return {
    ...state,
    version: journal.version,
    addresses: union(state.addresses, journal.addresses, (a) => `${a.ip}/${a.prefix} ${a.dev}`),
    tunnels: union(state.tunnels, journal.tunnels, (t) => t.name),
    files: union(state.files, journal.files),
    dirs: union(state.dirs, journal.dirs),
    originalSysctls: { ...journal.originalSysctls, ...state.originalSysctls },
    modules: union(state.modules, journal.modules),
    nft: { ...journal.nft, ...state.nft },
    unit: state.unit ?? journal.unit,
    runtime: state.runtime ?? journal.runtime,
    keepalived: state.keepalived ?? journal.keepalived,
  };
}

/**
 * What a journal must hold so that `mergeJournal(state, journal)` gives what merging the whole `next` state would:
 * only what `state` lacks (the state wins wherever both have a value). A one-VIP change to a balancer of 10,000
 * VIPs journals a few lines instead of a copy of its megabyte of state.
 */
export function journalDelta(state: HostState | null, next: HostState): HostState {
  if (!state) return next;
  const missing = <T>(had: readonly T[], wanted: readonly T[], key: (x: T) => string = String): T[] => {
    const seen = new Set(had.map(key));
    return wanted.filter((x) => !seen.has(key(x)));
  };
  return {
    ...next,
    // most runs keep every address: then no key per address is built (10,000 on a large balancer)
    addresses: sameAddresses(state.addresses, next.addresses) ? [] : missing(state.addresses, next.addresses, (a) => `${a.ip}/${a.prefix} ${a.dev}`),
    tunnels: missing(state.tunnels, next.tunnels, (t) => t.name),
    files: missing(state.files, next.files),
    dirs: missing(state.dirs, next.dirs),
    originalSysctls: Object.fromEntries(Object.entries(next.originalSysctls).filter(([k]) => !(k in state.originalSysctls))),
    modules: missing(state.modules, next.modules),
    nft: Object.fromEntries(Object.entries(next.nft).filter(([k]) => !(k in state.nft))),
  };
}

function sameAddresses(a: readonly StateAddress[], b: readonly StateAddress[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].ip !== b[i].ip || a[i].prefix !== b[i].prefix || a[i].dev !== b[i].dev) return false;
  return true;
}

/** What a journal records for the nft tables a run loads: their earlier record, or "pending" (not loaded yet). */
export function journalNft(state: HostState | null, keys: readonly string[]): HostState['nft'] {
  return Object.fromEntries(keys.map((k) => [k, state?.nft[k] ?? { rulesetHash: 'pending', listingHash: 'pending' }]));
}
