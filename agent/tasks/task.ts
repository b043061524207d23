/**
 * A task decides first (from facts, without touching the host) and acts later, inside one apply script.
 * A step is a shell fragment plus the fragment that undoes it, so that a failure rolls back this run's changes.
 */
export interface Step {
  readonly run: string;
  readonly undo: string;
}

export type TaskStatus = 'ok' | 'changed' | 'failed' | 'skipped';

export interface Task {
  /** What the task manages, as the report shows it: `sysctl net.ipv4.conf.all.arp_ignore=1`. */
  readonly name: string;
  readonly status: TaskStatus;
  /** Why it is ok, what changes, or what failed. */
  readonly detail: string;
  /** Before/after text for files and rulesets, or the list of added/removed items. */
  readonly diff?: string;
  readonly steps: readonly Step[];
  /** The task (re)loads or deletes an nft table, so the listing hashes recorded in the state file must be refreshed. */
  readonly touchesNft?: boolean;
}

export const ok = (name: string, detail: string): Task => ({ name, status: 'ok', detail, steps: [] });
export const failed = (name: string, detail: string): Task => ({ name, status: 'failed', detail, steps: [] });
export const changed = (name: string, detail: string, steps: readonly Step[], diff?: string): Task => ({ name, status: 'changed', detail, steps, diff });

/** A change to an nft table (see Task.touchesNft). */
export const nftChange = (name: string, detail: string, steps: readonly Step[], diff?: string): Task => ({
  ...changed(name, detail, steps, diff),
  touchesNft: true,
});
