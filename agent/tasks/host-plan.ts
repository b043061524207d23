import type { HostFile } from '../../model';
import type { HostFacts } from '../facts/gather';
import { HostState, STATE_VERSION, journalDelta, journalNft } from '../state';
import { createdDirs } from './common';
import { NftWant, listingSubstitutions, nftKey, nftRecord, recordedListingCommands } from './nft';
import { sha256Hex } from '../../model/digest';
import { stateDirTasks, stateFileText, stateTask } from './state-file';
import type { Task } from './task';

/** What a planner hands the runner: the tasks in order, and what the apply script needs around them. */
export interface HostPlanResult {
  readonly tasks: Task[];
  /** Backups of files this run replaces; dropped once every step has succeeded. */
  readonly writtenFiles: string[];
  /** What this run may create, as its journal records it before the first change (see journalPath, journalDelta). */
  readonly journal?: HostState;
  /** The folders tula-dsr owns once the run is done (those missing now go again if the run rolls back). */
  readonly dirs?: readonly string[];
  /** The plan needs the facts gathered again with every table listed: why (see TablePlan.relist). */
  readonly relist?: string;
  /**
   * What the host holds once the run succeeds, for the agent's copies (FileCache): the files that change, and the
   * state file's text with listing placeholders, whose values `recordedCommands` print after the run.
   */
  readonly texts?: { readonly files: readonly { path: string; content: string }[]; readonly state: { path: string; content: string } };
  readonly recordedCommands?: readonly string[];
}

/** What a host carries once the run's tasks are done, as the state file records it. */
export interface HostOutcome {
  readonly kind: HostState['kind'];
  readonly statePath: string;
  readonly addresses: HostState['addresses'];
  readonly tunnels: HostState['tunnels'];
  readonly files: readonly HostFile[];
  readonly originalSysctls: HostState['originalSysctls'];
  readonly modules: readonly string[];
  readonly nft: readonly NftWant[];
  readonly unit: HostState['unit'];
  readonly runtime?: HostState['runtime'];
  readonly keepalived?: HostState['keepalived'];
}

/**
 * The ending every host kind shares: the state file task last (it records the run once everything else
 * succeeded), the journal that the run writes before its first change, and the files whose backups go at the end.
 */
export function finishHostPlan(
  tasks: readonly Task[],
  outcome: HostOutcome,
  context: { readonly name: string; readonly facts: HostFacts; readonly specText: string; readonly generation: string },
  relist?: string,
): HostPlanResult {
  const { facts } = context;
  const state = facts.state;
  const paths = outcome.files.map((f) => f.path);
  const next: HostState = {
    version: STATE_VERSION,
    kind: outcome.kind,
    name: context.name,
    generation: context.generation,
    addresses: [...outcome.addresses],
    tunnels: [...outcome.tunnels],
    files: paths,
    dirs: createdDirs([...paths, outcome.statePath], facts, state),
    originalSysctls: outcome.originalSysctls,
    modules: [...outcome.modules],
    nft: nftRecord(outcome.nft),
    unit: outcome.unit,
    ...(outcome.runtime ? { runtime: outcome.runtime } : {}),
    ...(outcome.keepalived ? { keepalived: outcome.keepalived } : {}),
  };
  const nftTouched = tasks.some((t) => t.status === 'changed' && t.touchesNft);
  const stateText = stateFileText(next);
  const all = [...tasks, ...stateDirTasks(facts), stateTask(outcome.statePath, next, stateText, facts, listingSubstitutions(outcome.nft), nftTouched)];
  const journal = journalDelta(state, {
    ...next,
    nft: journalNft(
      state,
      outcome.nft.map((w) => nftKey(w.family, w.name)),
    ),
  });
  // stale files are moved to a backup as well (removeFileStep), and the state file is copied (stateTask): their
  // backups go once the run succeeded
  const texts = {
    files: outcome.files.filter((f) => facts.files[f.path]?.sha256 !== sha256Hex(f.content)).map((f) => ({ path: f.path, content: f.content })),
    state: { path: outcome.statePath, content: stateText },
  };
  return {
    tasks: all,
    writtenFiles: [...new Set([...paths, ...(state?.files ?? []), outcome.statePath])],
    journal,
    dirs: next.dirs,
    ...(relist ? { relist } : {}),
    texts,
    recordedCommands: recordedListingCommands(outcome.nft),
  };
}
