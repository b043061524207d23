/**
 * The flow copy's side of nft: listing the maps whose flows are sent (several maps in one `nft` run, as text: `nft -j`
 * prints nothing for commands read from a file), and writing received flows into the flow maps.
 */
import { BALANCER_TABLE, FlowEntry, replaceCommands, writeCommands } from '../../model';
import type { NftRunner } from '../nft';

/** Runs `nft -f -` with list commands and returns what nft printed. */
export type NftLister = (input: string) => Promise<string>;

const ELEMENT = /^(\d+\.\d+\.\d+\.\d+) \. (\d+) \. (\d+\.\d+\.\d+\.\d+) \. (\d+)(?: timeout \S+)?(?: expires \S+)? : (\S+)$/;

/** The IPv4 flow entries of nft's text listing of one or more maps; `rename` maps a listed map to the flow map it stands for. */
export function parseFlowListing(text: string, rename: (map: string) => string = (m) => m): FlowEntry[] {
  const entries: FlowEntry[] = [];
  for (const block of text.matchAll(/\tmap (\S+) \{([\s\S]*?)\n\t\}/g)) {
    const elements = /elements = \{([\s\S]*?)\}/.exec(block[2]);
    if (!elements) continue;
    for (const raw of elements[1].split(',')) {
      const m = ELEMENT.exec(raw.trim());
      if (m) entries.push({ map: rename(block[1]), saddr: m[1], sport: Number(m[2]), daddr: m[3], dport: Number(m[4]), value: m[5] });
    }
  }
  return entries;
}

export const listCommands = (maps: readonly string[]) => maps.map((m) => `list map netdev ${BALANCER_TABLE} ${m}`).join('\n') + '\n';

/**
 * The entries of `maps`, listed in one nft run; when that fails (a map the table does not have yet: the runtime may
 * start before the agent loads the table), map by map, a missing one counting as empty.
 */
export async function listFlows(list: NftLister, maps: readonly string[], rename?: (map: string) => string): Promise<FlowEntry[]> {
  if (!maps.length) return [];
  try {
    return parseFlowListing(await list(listCommands(maps)), rename);
  } catch {
    const each = await Promise.all(maps.map((m) => list(listCommands([m])).catch(() => '')));
    return each.flatMap((text) => parseFlowListing(text, rename));
  }
}

const TABLE = `netdev ${BALANCER_TABLE}`;

/**
 * Takes listed entries out of their recent map once they are sent, so that each listing holds only what is new since
 * the last one (listing costs about what the entries cost to print). The `add` before each `delete` makes the transaction
 * valid when an entry expired meanwhile; an entry noted again with another backend since the listing makes it fail as a
 * whole, and then nothing is taken out (the next listing sends that entry, and the rest expire on their own).
 */
export function forgetCommands(recent: readonly { map: string; entry: FlowEntry }[]): string {
  return (
    recent
      .map(({ map, entry: e }) => {
        const key = `${e.saddr} . ${e.sport} . ${e.daddr} . ${e.dport}`;
        return `add element ${TABLE} ${map} { ${key} : ${e.value} }\ndelete element ${TABLE} ${map} { ${key} }`;
      })
      .join('\n') + '\n'
  );
}

/**
 * Writes entries in one transaction; when nft refuses it (an entry the map holds with another value), halves the batch
 * until the refused entries stand alone, and replaces each of those. Returns how many entries could not be written.
 */
export async function writeFlows(nft: NftRunner, entries: readonly (FlowEntry & { timeoutSec: number })[]): Promise<number> {
  if (!entries.length) return 0;
  try {
    await nft.apply(writeCommands(TABLE, entries) + '\n');
    return 0;
  } catch (error) {
    if (entries.length > 1) {
      const half = Math.ceil(entries.length / 2);
      return (await writeFlows(nft, entries.slice(0, half))) + (await writeFlows(nft, entries.slice(half)));
    }
    try {
      await nft.apply(replaceCommands(TABLE, entries[0]) + '\n');
      return 0;
    } catch {
      void error;
      return 1;
    }
  }
}
