import { elementKey } from './incremental';
import { NftChain, NftMap, NftTable, NftTableFacts } from './objects';
import { renderDefines } from './render';

/** An element-level change of a whole table, and the transaction that undoes it (see renderTableUpdate). */
export interface TableUpdate {
  /** One `nft -f` transaction; empty when the tables do not differ. */
  readonly apply: string;
  /** The transaction that puts `before` back, element for element. */
  readonly undo: string;
  /** `- map element` and `+ map element` lines, chains and counters added or removed: what the diff shows. */
  readonly changes: readonly string[];
  /** The VIPs whose elements changed, in the table's order. */
  readonly vips: readonly string[];
  /**
   * VIP elements went that no element of `after` names an owner for: `before` was read back from its text, which names
   * no VIP (see parseNftDeclarative), and they belong to VIPs that `after` no longer has.
   */
  readonly unnamed?: boolean;
}

// field by field, so that a table read back from its text (whose objects lack the absent flags) compares equal
const declaration = (m: NftMap) => JSON.stringify([m.set ?? false, m.counter ?? false, m.type, m.typeof ?? false, m.dynamic ?? null, m.size ?? null]);
const chainText = (c: NftChain) => JSON.stringify([c.hook ?? null, c.rules]);
const defineText = (d: NftTable['defines'][number]) => JSON.stringify([d.name, d.value, d.comment]);

/**
 * Why `before` cannot become `after` by elements, chains and counters alone (a map declared differently, another
 * define, a chain whose rules changed, a hook), or null when it can.
 */
function structuralChange(before: NftTable, after: NftTable): string | null {
  if (before.family !== after.family || before.name !== after.name) return 'another table';
  if (before.defines.map(defineText).join() !== after.defines.map(defineText).join()) return 'a define changed';
  if (before.maps.map((m) => m.name).join() !== after.maps.map((m) => m.name).join()) return 'maps added or removed';
  const old = new Map(before.maps.map((m) => [m.name, m]));
  for (const map of after.maps) if (declaration(map) !== declaration(old.get(map.name)!)) return `map ${map.name} declared differently`;
  const oldChains = new Map(before.chains.map((c) => [c.name, c]));
  for (const chain of after.chains) {
    const had = oldChains.get(chain.name);
    if (had ? chainText(had) !== chainText(chain) : chain.hook !== undefined) return `chain ${chain.name} changed`;
  }
  const newChains = new Set(after.chains.map((c) => c.name));
  if (before.chains.some((c) => c.hook !== undefined && !newChains.has(c.name))) return 'a base chain goes';
  return null;
}

/**
 * The transaction that turns the loaded table `before` into `after` by elements alone, as the balancer's apply
 * makes a change to a few VIPs on a table of thousands: it deletes the elements that went or changed (by key, so
 * that the kernel refuses the whole transaction if one is missing) and creates those that came or changed (`create`
 * refuses one that exists), adds the chains and counters that `after` introduces and deletes those it no longer
 * has. Dynamic maps (flows) are never touched, nor any element that did not change, so flows and element counters
 * survive. Null when the change is structural (see structuralChange): only a full reload can make it.
 */
export function renderTableUpdate(before: NftTable, after: NftTable): TableUpdate | null {
  if (structuralChange(before, after) !== null) return null;
  const id = `${after.family} ${after.name}`;
  const changes: string[] = [];
  const vips = new Set<string>();
  const deletes: string[] = [];
  const creates: string[] = [];
  const undoDeletes: string[] = [];
  const undoCreates: string[] = [];
  let unnamed = false;
  const old = new Map(before.maps.map((m) => [m.name, m]));
  for (const map of after.maps) {
    if (map.dynamic) continue;
    // Both tables list a map's elements in the same order (the spec's), so a change to a few VIPs differs in one
    // stretch: only the elements between the common beginning and the common end are keyed. A key is unique in its
    // map, so an element of the common ends cannot be in the other table's stretch.
    const previous = old.get(map.name)!.elements;
    const current = map.elements;
    let start = 0;
    while (start < previous.length && start < current.length && previous[start].text === current[start].text) start++;
    let endBefore = previous.length;
    let endAfter = current.length;
    while (endBefore > start && endAfter > start && previous[endBefore - 1].text === current[endAfter - 1].text) {
      endBefore--;
      endAfter--;
    }
    if (start === endBefore && start === endAfter) continue;
    const had = new Map(previous.slice(start, endBefore).map((e) => [elementKey(map, e), e]));
    const wanted = new Map(current.slice(start, endAfter).map((e) => [elementKey(map, e), e]));
    const gone = [...had].filter(([key, e]) => wanted.get(key)?.text !== e.text);
    const come = [...wanted].filter(([key, e]) => had.get(key)?.text !== e.text);
    for (const [, e] of come) if (e.vip) vips.add(e.vip);
    // a map whose elements belong to VIPs (not to pools, nor shared)
    const ofVips = current.some((e) => e.vip !== undefined);
    for (const [key, e] of gone) {
      // the same key in `after` is the same VIP's element
      const owner = e.vip ?? wanted.get(key)?.vip;
      if (owner) vips.add(owner);
      else if (ofVips && e.pool === undefined && !wanted.has(key)) unnamed = true;
    }
    changes.push(...gone.map(([, e]) => `- ${map.name} ${e.text}`), ...come.map(([, e]) => `+ ${map.name} ${e.text}`));
    if (gone.length) {
      deletes.push(`delete element ${id} ${map.name} { ${gone.map(([key]) => key).join(', ')} }`);
      undoCreates.push(`create element ${id} ${map.name} { ${gone.map(([, e]) => e.text).join(', ')} }`);
    }
    if (come.length) {
      creates.push(`create element ${id} ${map.name} { ${come.map(([, e]) => e.text).join(', ')} }`);
      undoDeletes.push(`delete element ${id} ${map.name} { ${come.map(([key]) => key).join(', ')} }`);
    }
  }
  const beforeChains = new Set(before.chains.map((c) => c.name));
  const afterChains = new Set(after.chains.map((c) => c.name));
  const addedChains = after.chains.filter((c) => !beforeChains.has(c.name));
  const removedChains = before.chains.filter((c) => !afterChains.has(c.name));
  // sets: a table has a named counter per VIP, and a list lookup made this quadratic (2 s for 10,000 VIPs)
  const beforeCounters = new Set(before.counters);
  const afterCounters = new Set(after.counters);
  const addedCounters = after.counters.filter((c) => !beforeCounters.has(c));
  const removedCounters = before.counters.filter((c) => !afterCounters.has(c));
  changes.push(
    ...removedChains.map((c) => `- chain ${c.name}`),
    ...addedChains.map((c) => `+ chain ${c.name}`),
    ...removedCounters.map((c) => `- counter ${c}`),
    ...addedCounters.map((c) => `+ counter ${c}`),
  );
  if (!changes.length) return { apply: '', undo: '', changes, vips: [] };
  const addChains = (chains: readonly NftChain[]) =>
    chains.flatMap((c) => [`add chain ${id} ${c.name}`, ...c.rules.map((r) => `add rule ${id} ${c.name} ${r}`)]);
  // all emptied before any goes: a chain that another one jumps to cannot be deleted while that rule is there
  const dropChains = (chains: readonly NftChain[]) => [
    ...chains.map((c) => `flush chain ${id} ${c.name}`),
    ...chains.map((c) => `delete chain ${id} ${c.name}`),
  ];
  // Counters and chains come before the elements that refer to them, and go after the elements that did.
  const transaction = (defines: NftTable['defines'], lines: string[]) => [...renderDefines(defines), ...lines].join('\n') + '\n';
  return {
    apply: transaction(after.defines, [
      ...addedCounters.map((c) => `add counter ${id} ${c}`),
      ...addChains(addedChains),
      ...deletes,
      ...creates,
      ...dropChains(removedChains),
      ...removedCounters.map((c) => `delete counter ${id} ${c}`),
    ]),
    undo: transaction(before.defines, [
      ...removedCounters.map((c) => `add counter ${id} ${c}`),
      ...addChains(removedChains),
      ...undoDeletes,
      ...undoCreates,
      ...dropChains(addedChains),
      ...addedCounters.map((c) => `delete counter ${id} ${c}`),
    ]),
    changes,
    vips: [...vips].sort(),
    ...(unnamed && { unnamed }),
  };
}

/** What a reload needs to know about a table that is loaded exactly as `table` describes (see NftTableFacts). */
export function tableFactsOf(table: NftTable): NftTableFacts {
  return {
    exists: true,
    counters: [...table.counters],
    maps: table.maps.filter((m) => !m.set).map((m) => m.name),
    sets: table.maps.filter((m) => m.set).map((m) => m.name),
    chains: table.chains.map((c) => c.name),
    sizes: Object.fromEntries(table.maps.filter((m) => m.size !== undefined).map((m) => [m.name, m.size!])),
    hooks: Object.fromEntries(table.chains.filter((c) => c.hook !== undefined).map((c) => [c.name, c.hook!])),
    elements: Object.fromEntries(table.maps.filter((m) => m.keepElements).map((m) => [m.name, m.elements.map((e) => e.text)])),
  };
}
