import { NftTable, NftTableFacts, renderNftDeclarative, sha256Hex } from '../../model';
import { renderTableUpdate, tableFactsOf } from '../../model/nft/table-update';
import { ensureDirCommand, renderCommand } from '../../model/shell';
import type { HostFacts } from '../facts/gather';
import { recordedLoad } from '../facts/nft-generation';
import type { HostState } from '../state';
import { STATE_DIR } from '../state';
import { NftWant, STALE_LISTING, nftKey, nftScratchFiles, nftTableTask, nftTaskName } from './nft';
import { cmd } from './steps';
import { Task, failed, nftChange, ok } from './task';

/** What planTableTask decided: the task, and the table as the state must record it. */
export interface TablePlan {
  readonly task: Task;
  readonly want: NftWant;
  /**
   * The facts did not list the table, and the table its last load created cannot be read back (the boot ruleset is
   * missing or edited) or is another renderer's (tula-dsr was upgraded since): why. A reload then needs the table
   * listed: the runner gathers the facts again with it listed, and plans again.
   */
  readonly relist?: string;
}

/** Lines of the diff an incremental update shows, at most: a change to thousands of VIPs shows its first ones. */
const DIFF_LINES = 200;

/**
 * The table task of a host whose table tula-dsr alone changes (no runtime rewrites it). When the facts found the
 * table exactly as the last load left it (the ruleset generation has not moved: see nft-generation.ts), the table
 * that load created is read back (from the boot ruleset it wrote), and checked against the hash that load recorded;
 * then a change to some VIPs is one transaction of their elements (renderTableUpdate), with its exact inverse as the
 * undo, and nothing lists the table. Anything else (the generation moved or is unknown, a structural change, MACs
 * resolved differently) takes the full reload, which lists the table as before; so does a previous table that cannot
 * be read back, through a second gathering of facts that lists it (`relist`).
 *
 * `render(facts)` gives the want for a full reload against those table facts (null: no reload, only the desired
 * text, which does not depend on them; rendering the reload of ten thousand VIPs takes a tenth of a second);
 * `previous()` the table the last load created, or why it cannot be read back.
 */
export function planTableTask(
  facts: HostFacts,
  state: HostState | null,
  label: string,
  desired: NftTable,
  render: (tableFacts: NftTableFacts | null) => NftWant,
  previous: () => NftTable | string,
): TablePlan {
  const key = nftKey(desired.family, desired.name);
  const live = facts.nft[key];
  const recorded = state?.nft[key];
  const since = live?.unchangedSince;
  if (!since) {
    const want = render(live?.table ?? { exists: false, counters: [], maps: [], sets: [], chains: [], sizes: {}, hooks: {} });
    return { task: nftTableTask(want, facts, state, label), want };
  }
  const name = `nft table ${desired.family} ${desired.name}${label ? ` (${label})` : ''}`;
  const unchanged = since.listed
    ? `listing as at the last apply; generation ${since.generation} recorded`
    : `generation ${since.generation} unchanged since the last apply`;
  if (recorded?.rulesetHash !== since.rulesetHash) {
    // the facts compared the same two records: only a state file edited by hand gets here
    return {
      task: failed(
        name,
        `the generation record ${nftScratchFiles(desired.family, desired.name).generation} does not match the state file; remove it and run again`,
      ),
      want: render(null),
    };
  }
  // in sync: the desired text does not depend on the table facts, and the previous spec need not be built again
  const same = render(null);
  if (recorded.rulesetHash === sha256Hex(same.desired))
    return { task: ok(name, `in sync (${unchanged})`), want: { ...same, keepListing: recorded.listingHash } };
  const before = previous();
  const unreadable =
    typeof before === 'string'
      ? before
      : sha256Hex(renderNftDeclarative(before)) === recorded.rulesetHash
        ? null
        : 'it is not the ruleset the last apply loaded';
  // the new table takes over the counts of the loaded one's named counters, which only a listing has
  const takesOver = typeof before !== 'string' && desired.maps.some((m) => m.takesOver && before.counters.some((c) => c.startsWith(m.takesOver!)));
  if (unreadable === null && typeof before !== 'string' && !takesOver) {
    const update = renderTableUpdate(before, desired);
    if (update) return { task: incrementalTask(same, label, since.generation, update, unchanged), want: { ...same, keepListing: STALE_LISTING } };
  }
  // What a reload replaces: the listing where the facts made one; else the table the last load created, unless it
  // cannot be read back or its counts are taken over.
  if (!since.listed && (unreadable !== null || typeof before === 'string' || takesOver)) {
    const why =
      unreadable !== null ? `the table the last apply loaded cannot be read back (${unreadable})` : 'the table takes over the counts of named counters';
    return { task: ok(name, `${why} (${unchanged}): listing it`), want: same, relist: why };
  }
  const want = render(since.listed && live.table.exists ? live.table : tableFactsOf(keptAsDesired(before as NftTable, desired)));
  return { task: nftTableTask(want, facts, state, label, `ruleset differs (${unchanged}; not a change of elements alone: reloaded)`), want };
}

function incrementalTask(want: NftWant, label: string, generation: number, update: NonNullable<ReturnType<typeof renderTableUpdate>>, unchanged: string): Task {
  const files = nftScratchFiles(want.family, want.name);
  const write = (text: string, path: string) => `printf '%s' ${renderCommand([text])} > ${renderCommand([path])}`;
  const moved = `the ruleset generation moved since the facts were gathered (another nft transaction ran): run apply again`;
  const run = [
    ensureDirCommand(STATE_DIR),
    write(update.apply, files.update),
    write(update.undo, files.undo),
    // the update is only right for the table the facts saw
    recordedLoad(want.family, want.name, cmd('nft', '-f', files.update), sha256Hex(want.desired), { generation, moved }),
  ].join(' && ');
  const undo = `${cmd('rm', '-f', files.generation)}; ${cmd('nft', '-f', files.undo)}`;
  const shown =
    update.changes.length > DIFF_LINES ? [...update.changes.slice(0, DIFF_LINES), `… and ${update.changes.length - DIFF_LINES} more`] : update.changes;
  const { vips } = update;
  const named = vips.length > 5 ? `${vips.slice(0, 5).join(', ')} and ${vips.length - 5} more` : vips.join(', ');
  const whose =
    [...(vips.length ? [`of VIP${vips.length > 1 ? 's' : ''} ${named}`] : []), ...(update.unnamed ? ['of VIPs the spec no longer has'] : [])].join(' and ') ||
    'of shared objects';
  const detail = `incremental: ${update.changes.length} changes ${whose} in one transaction (${unchanged})`;
  return nftChange(nftTaskName(want, label), detail, [{ run, undo, allOrNothing: true }], `${shown.join('\n')}\n`);
}

/**
 * A table read back from its text with the renderer's own marks of `desired` (which sets a reload never flushes):
 * the text does not carry them, and tableFactsOf gives the elements of those sets.
 */
function keptAsDesired(table: NftTable, desired: NftTable): NftTable {
  const kept = new Set(desired.maps.filter((m) => m.keepElements).map((m) => m.name));
  return { ...table, maps: table.maps.map((m) => (kept.has(m.name) ? { ...m, keepElements: true } : m)) };
}
