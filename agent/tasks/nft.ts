import { sha256Hex } from '../../model';
import type { HostFacts } from '../facts/gather';
import { nftListingFile, nftRecordListingCommand } from '../facts/gather';
import { nftGenerationFile, recordedLoad } from '../facts/nft-generation';
import { renderDiff } from '../../model/text-diff';
import type { HostState } from '../state';
import { STATE_DIR } from '../state';
import { Task, nftChange, ok } from './task';
import { cmd } from './steps';
import { ensureDirCommand, removeFilesCommand, renderCommand, sha256AssignCommand } from '../../model/shell';
import { sectionLine } from '../../model/sections';

export interface NftWant {
  readonly family: string;
  readonly name: string;
  /** The text whose hash identifies the desired configuration (declarative form, values resolved). */
  readonly desired: string;
  /** The text `nft -f` loads: an in-place reload or an idempotent replace. */
  readonly load: string;
  /** Record the ruleset generation the load creates (see nft-generation.ts), so that the next run need not list the table. */
  readonly recordGeneration?: boolean;
  /**
   * The listing hash the state records without listing the table again: the recorded one when nothing changed, or
   * STALE_LISTING after an incremental update. Absent: the table is listed after the run.
   */
  readonly keepListing?: string;
}

/**
 * The recorded listing no longer describes the table: an incremental update changed it since, without listing it.
 * The generation record vouches for the table instead; once the generation moves, only a reload can be sure again.
 */
export const STALE_LISTING = 'stale: changed incrementally since';

export const nftKey = (family: string, name: string) => `${family} ${name}`;
export const nftTaskName = (want: NftWant, label: string) => `nft table ${want.family} ${want.name}${label ? ` (${label})` : ''}`;
export const listingPlaceholder = (family: string, name: string) => `__TULA_LISTING_${family}_${name}__`;

/**
 * One nft table that tula-dsr owns. In sync when the table exists, the loaded ruleset's hash matches the desired
 * one, and the live listing still hashes to what it did right after loading (otherwise it was edited by hand).
 * Loading is one `nft -f` transaction; the undo puts back the table as it was listed just before.
 */
export function nftTableTask(want: NftWant, facts: HostFacts, state: HostState | null, label: string, known?: string): Task {
  const key = nftKey(want.family, want.name);
  const live = facts.nft[key];
  const recorded = state?.nft[key];
  const name = nftTaskName(want, label);
  const desiredHash = sha256Hex(want.desired);
  const reasons: string[] = [];
  if (known) reasons.push(known);
  else if (!live?.table.exists) reasons.push('table missing');
  else {
    if (recorded?.rulesetHash !== desiredHash) reasons.push('ruleset differs');
    if (recorded?.listingHash === STALE_LISTING)
      reasons.push('another nft transaction ran since the last incremental update (the ruleset generation moved): reloaded to be sure');
    else if (recorded && live.listingHash !== recorded.listingHash) reasons.push('live table was changed outside tula-dsr');
  }
  if (!reasons.length) return ok(name, 'in sync');
  const { load, before } = nftScratchFiles(want.family, want.name);
  const existed = !!known || !!live?.table.exists;
  const generationFile = nftGenerationFile(want.family, want.name);
  // `nft -f` goes last and is one transaction: when the step fails, the table is as it was (allOrNothing)
  const run = [
    ensureDirCommand(STATE_DIR),
    removeFilesCommand([before]),
    `printf '%s' ${renderCommand([want.load])} > ${renderCommand([load])}`,
    existed
      ? `{ printf 'delete table %s %s\\n' ${renderCommand([want.family])} ${renderCommand([want.name])}; ${cmd('nft', 'list', 'table', want.family, want.name)}; } > ${renderCommand([before])}`
      : ':',
    want.recordGeneration
      ? recordedLoad(want.family, want.name, cmd('nft', '-f', load), desiredHash)
      : `${cmd('rm', '-f', generationFile)} && ${cmd('nft', '-f', load)}`,
  ].join(' && ');
  const present = `${cmd('nft', 'list', 'tables', want.family)} | grep -qxF ${renderCommand([`table ${want.family} ${want.name}`])}`;
  const undo = `${cmd('rm', '-f', generationFile)}; ${existed ? cmd('nft', '-f', before) : `if ${present}; then ${cmd('nft', 'delete', 'table', want.family, want.name)}; fi`}`;
  const comparable = live?.live !== undefined && live.recorded !== undefined && recorded?.listingHash !== STALE_LISTING;
  const diff = comparable ? renderDiff(live.live!, live.recorded!, `nft table ${key} (live vs as applied)`) : undefined;
  return nftChange(name, reasons.join('; '), [{ run, undo, allOrNothing: true }], diff);
}

/**
 * Files the agent keeps for a table under STATE_DIR: what it loaded, the table before, the listing after; an
 * incremental update and its undo; the generation record.
 */
export function nftScratchFiles(
  family: string,
  name: string,
): { load: string; before: string; listing: string; update: string; undo: string; generation: string } {
  const base = `${STATE_DIR}/${family}-${name}`;
  return {
    load: `${base}.load.nft`,
    before: `${base}.before.nft`,
    listing: nftListingFile(family, name),
    update: `${base}.update.nft`,
    undo: `${base}.undo.nft`,
    generation: nftGenerationFile(family, name),
  };
}

/** Shell that computes each table's listing hash for the state file, after every step succeeded. */
export function listingSubstitutions(tables: readonly NftWant[]): Record<string, string> {
  return Object.fromEntries(
    tables.filter((t) => t.keepListing === undefined).map((t) => [listingPlaceholder(t.family, t.name), nftRecordListingCommand(t.family, t.name)]),
  );
}

/**
 * Shell printing, after a run, each listing hash the state file recorded (`PLACEHOLDER HASH` lines under a `recorded`
 * section): the listing file the substitution wrote hashes the same, and the agent needs the values to keep an exact
 * copy of the state file (see FileCache).
 */
export function recordedListingCommands(tables: readonly NftWant[]): string[] {
  const pending = tables.filter((t) => t.keepListing === undefined);
  if (!pending.length) return [];
  return [
    sectionLine('recorded'),
    ...pending.map((t) => `${sha256AssignCommand('h', nftListingFile(t.family, t.name))}; echo ${renderCommand([listingPlaceholder(t.family, t.name)])} "$h"`),
  ];
}

/** The state file's text with the recorded values in place of their placeholders; null when one is missing. */
export function withRecordedListings(text: string, recorded: string | undefined): string | null {
  const values = new Map<string, string>();
  for (const line of (recorded ?? '').split('\n')) {
    const m = /^(__TULA_LISTING_\w+?__) ([0-9a-f]{64})$/.exec(line);
    if (m) values.set(m[1], m[2]);
  }
  let missing = false;
  const out = text.replace(/__TULA_LISTING_\w+?__/g, (placeholder) => {
    const value = values.get(placeholder);
    if (value === undefined) missing = true;
    return value ?? placeholder;
  });
  return missing ? null : out;
}

export function nftRecord(tables: readonly NftWant[]): Record<string, { rulesetHash: string; listingHash: string }> {
  return Object.fromEntries(
    tables.map((t) => [nftKey(t.family, t.name), { rulesetHash: sha256Hex(t.desired), listingHash: t.keepListing ?? listingPlaceholder(t.family, t.name) }]),
  );
}
