import { NftElement, NftMap, NftTable } from './objects';
import { renderDefines } from './render';

/** An element's key: a set element is its key; a map element is what comes before ` : `. */
export function elementKey(map: NftMap, element: NftElement): string {
  if (map.set) return element.text;
  const at = element.text.lastIndexOf(' : ');
  return at < 0 ? element.text : element.text.slice(0, at);
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
  const beforeMaps = new Map(before.maps.map((m) => [m.name, m]));
  const lines: string[] = [];
  const deletes: string[] = [];
  const adds: string[] = [];
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
    if (gone.length) deletes.push(`delete element ${id} ${map.name} { ${gone.join(', ')} }`);
    if (come.length) adds.push(`add element ${id} ${map.name} { ${come.join(', ')} }`);
  }
  const beforeChains = new Set(before.chains.map((c) => c.name));
  for (const chain of after.chains.filter((c) => !beforeChains.has(c.name))) {
    if (chain.hook) return null;
    lines.push(`add chain ${id} ${chain.name}`, ...chain.rules.map((r) => `add rule ${id} ${chain.name} ${r}`));
  }
  if (!lines.length && !deletes.length && !adds.length) return '';
  return [...renderDefines(after.defines), ...lines, ...deletes, ...adds].join('\n') + '\n';
}
