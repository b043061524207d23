import { NftChain, NftElement, NftMap, NftTable } from './objects';
import { mapClauses, renderDefines } from './render';

/** An element's key: a set element is its key; a map element is what comes before ` : `. */
export function elementKey(map: NftMap, element: NftElement): string {
  if (map.set) return element.text;
  const at = element.text.lastIndexOf(' : ');
  return at < 0 ? element.text : element.text.slice(0, at);
}

/** A map whose owned elements differ between `before` and `after`: the keys that went or changed, the texts that came. */
interface OwnedChange {
  readonly map: NftMap;
  readonly old: NftMap;
  readonly gone: readonly string[];
  readonly come: readonly string[];
}

/** The maps whose owned elements change, or null when a map is new or declared differently (only a reload can). */
function ownedChanges(before: NftTable, after: NftTable, owned: (e: NftElement) => boolean): OwnedChange[] | null {
  const beforeMaps = new Map(before.maps.map((m) => [m.name, m]));
  const changes: OwnedChange[] = [];
  for (const map of after.maps) {
    const old = beforeMaps.get(map.name);
    const wanted = map.elements.filter(owned);
    const had = old?.elements.filter(owned) ?? [];
    if (!old) {
      if (wanted.length) return null;
      continue;
    }
    if (old.type !== map.type || !!old.set !== !!map.set || !!old.counter !== !!map.counter) return null;
    const hadByKey = new Map(had.map((e) => [elementKey(old, e), e.text]));
    const wantedByKey = new Map(wanted.map((e) => [elementKey(map, e), e.text]));
    const gone = [...hadByKey].filter(([key, text]) => wantedByKey.get(key) !== text).map(([key]) => key);
    const come = [...wantedByKey].filter(([key, text]) => hadByKey.get(key) !== text).map(([, text]) => text);
    if (gone.length || come.length) changes.push({ map, old, gone, come });
  }
  return changes;
}

function newChains(before: NftTable, after: NftTable): NftChain[] {
  const beforeChains = new Set(before.chains.map((c) => c.name));
  return after.chains.filter((c) => !beforeChains.has(c.name));
}

/**
 * The transaction that turns the elements `owned` in `before` into those in `after`, leaving every other element,
 * the flows and the counters alone: it deletes what went or changed (by key) and adds what came or changed, and
 * adds the chains `after` has and `before` lacks (a pool whose slot count changed jumps to another scheduler
 * chain). Null when the change is more than elements and new chains (a map declared differently, another hook):
 * only a full reload can make it.
 */
export function renderOwnedUpdate(before: NftTable, after: NftTable, owned: (e: NftElement) => boolean): string | null {
  const id = `${after.family} ${after.name}`;
  const changes = ownedChanges(before, after, owned);
  if (!changes) return null;
  const lines: string[] = [];
  for (const chain of newChains(before, after)) {
    if (chain.hook) return null;
    lines.push(`add chain ${id} ${chain.name}`, ...chain.rules.map((r) => `add rule ${id} ${chain.name} ${r}`));
  }
  const deletes = changes.filter((c) => c.gone.length).map((c) => `delete element ${id} ${c.map.name} { ${c.gone.join(', ')} }`);
  const adds = changes.filter((c) => c.come.length).map((c) => `add element ${id} ${c.map.name} { ${c.come.join(', ')} }`);
  if (!lines.length && !deletes.length && !adds.length) return '';
  return [...renderDefines(after.defines), ...lines, ...deletes, ...adds].join('\n') + '\n';
}

/** The change of renderOwnedUpdate written as a rewrite of each map that changes (see renderOwnedRewrite). */
export interface OwnedRewrite {
  /** `flush` each changed map, then `add` it again with its whole content; '' when nothing changes. */
  readonly text: string;
  /** Elements it writes. */
  readonly elements: number;
}

/**
 * The change of renderOwnedUpdate as a rewrite of each map that changes: `flush set|map`, then `add set|map … {
 * …; elements = { … } }` with every element the map should hold, in one transaction (atomic: packets see the old
 * map or the new one). The declaration leaves the size out, so the map keeps the capacity the agent loaded. Why:
 * nft (1.0.6) reads every named object of the table (a counter per VIP) before any `add element` or `delete
 * element`, but only the table and set declarations before a flush and an `add set`.
 *
 * Null when a flush could take more with it than the owned elements: a changed map that holds, before or after,
 * an element not owned, or counters, or flows (written by the packet path); or when a chain must be added (only
 * the update adds it).
 */
export function renderOwnedRewrite(before: NftTable, after: NftTable, owned: (e: NftElement) => boolean): OwnedRewrite | null {
  const id = `${after.family} ${after.name}`;
  const changes = ownedChanges(before, after, owned);
  if (!changes || newChains(before, after).length) return null;
  const wholly = (map: NftMap) => !map.counter && !map.dynamic && map.elements.every(owned);
  if (changes.some((c) => !wholly(c.map) || !wholly(c.old))) return null;
  if (!changes.length) return { text: '', elements: 0 };
  const lines = renderDefines(after.defines);
  for (const { map } of changes) {
    const kind = map.set ? 'set' : 'map';
    lines.push(`flush ${kind} ${id} ${map.name}`);
    if (map.elements.length) {
      const elements = map.elements.map((e) => e.text).join(', ');
      lines.push(`add ${kind} ${id} ${map.name} { ${mapClauses({ ...map, size: undefined })}; elements = { ${elements} } }`);
    }
  }
  return { text: lines.join('\n') + '\n', elements: changes.reduce((n, c) => n + c.map.elements.length, 0) };
}
