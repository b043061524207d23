import { NftTable, NftTableFacts, renderNftDeclarative, sha256Hex } from '../../model';
import { renderTableUpdate, tableFactsOf } from '../../model/nft/table-update';
import { renderCommand } from '../../model/shell';
import type { HostFacts } from '../facts/gather';
import { NFT_GENERATION_COMMAND, recordedLoad } from '../facts/nft-generation';
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
   * The facts did not list the table, and the table the recorded spec builds now is not the one its last load
   * created (tula-dsr was upgraded since, or MACs resolve differently): a reload needs the table listed.
   */
  readonly relist?: boolean;
}

/** Lines of the diff an incremental update shows, at most: a change to thousands of VIPs shows its first ones. */
const DIFF_LINES = 200;

/**
 * The table task of a host whose table tula-dsr alone changes (no runtime rewrites it). When the facts found the
 * table exactly as the last load left it (the ruleset generation has not moved: see nft-generation.ts), the table
 * that load created is built again from the spec the state records, and checked against the hash that load recorded;
 * then a change to some VIPs is one transaction of their elements (renderTableUpdate), with its exact inverse as the
 * undo, and nothing lists the table. Anything else (the generation moved or is unknown, a structural change, MACs
 * resolved differently) takes the full reload, which lists the table as before.
 *
 * `render(facts)` gives the want for a full reload against those table facts (null: no reload, only the desired
 * text, which does not depend on them; rendering the reload of ten thousand VIPs takes a tenth of a second);
 * `previous()` the table the recorded spec builds, or an error text.
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
  if (typeof before === 'string') {
    return { task: failed(name, `the table is unchanged since the last apply, but the spec the state records cannot be built again: ${before}`), want: same };
  }
  const rebuilt = sha256Hex(renderNftDeclarative(before)) === recorded.rulesetHash;
  const update = rebuilt ? renderTableUpdate(before, desired) : null;
  if (update) return { task: incrementalTask(same, label, since.generation, update, unchanged), want: { ...same, keepListing: STALE_LISTING } };
  // another renderer's table (an upgrade: named counters and maps this one no longer has) can only be reloaded from
  // its listing, or the objects it alone has would stay
  if (!rebuilt && !since.listed)
    return { task: ok(name, `the table the last apply loaded cannot be built again (${unchanged}): listing it`), want: same, relist: true };
  // the facts a reload needs: the listing where the facts made one, else the table the last load created
  const want = render(since.listed && live.table.exists ? live.table : tableFactsOf(before));
  return { task: nftTableTask(want, facts, state, label, `ruleset differs (${unchanged}; not a change of elements alone: reloaded)`), want };
}

function incrementalTask(want: NftWant, label: string, generation: number, update: NonNullable<ReturnType<typeof renderTableUpdate>>, unchanged: string): Task {
  const files = nftScratchFiles(want.family, want.name);
  const write = (text: string, path: string) => `printf '%s' ${renderCommand([text])} > ${renderCommand([path])}`;
  const moved = `the ruleset generation moved since the facts were gathered (another nft transaction ran): run apply again`;
  const run = [
    cmd('mkdir', '-p', STATE_DIR),
    write(update.apply, files.update),
    write(update.undo, files.undo),
    // the update is only right for the table the facts saw
    `{ [ "$(${NFT_GENERATION_COMMAND})" = ${renderCommand([String(generation)])} ] || { echo ${renderCommand([moved])} >&2; false; }; }`,
    recordedLoad(want.family, want.name, cmd('nft', '-f', files.update), sha256Hex(want.desired)),
  ].join(' && ');
  const undo = `${cmd('rm', '-f', files.generation)}; ${cmd('nft', '-f', files.undo)}`;
  const shown =
    update.changes.length > DIFF_LINES ? [...update.changes.slice(0, DIFF_LINES), `… and ${update.changes.length - DIFF_LINES} more`] : update.changes;
  const { vips } = update;
  const named = vips.length > 5 ? `${vips.slice(0, 5).join(', ')} and ${vips.length - 5} more` : vips.join(', ');
  const whose = vips.length ? `of VIP${vips.length > 1 ? 's' : ''} ${named}` : 'of shared objects';
  const detail = `incremental: ${update.changes.length} changes ${whose} in one transaction (${unchanged})`;
  return nftChange(nftTaskName(want, label), detail, [{ run, undo, allOrNothing: true }], `${shown.join('\n')}\n`);
}
