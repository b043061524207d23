/**
 * A task decides first (from facts, without touching the host) and acts later, inside one apply script.
 * A step is a shell fragment plus the fragment that undoes it, so that a failure rolls back this run's changes.
 */
export interface Step {
  readonly run: string;
  /**
   * Puts back what `run` changed. It runs for every step that succeeded and for the step that failed (which may
   * have done part of its work), so it must be idempotent: safe whether `run` did nothing, some or all of its work.
   * Its exit status says whether the undo worked; a failed undo is reported.
   */
  readonly undo: string;
  /**
   * `run` changes the host only in its last command, which either succeeds or changes nothing (`nft -f`, a single
   * `ip` or `sysctl` call): when the step fails there is nothing to undo, so its undo does not run. Default false.
   */
  readonly allOrNothing?: boolean;
  /**
   * What output on stderr means when `run` exits 0. `warning` (the default): the step worked, the tools used report
   * failure by their exit status, and the text is shown with the task. `failure`: the step fails, for commands whose
   * errors can only show on stderr (a command substitution inside a pipeline).
   */
  readonly stderr?: 'warning' | 'failure';
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
