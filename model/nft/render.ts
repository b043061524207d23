import { pushAll } from '../arrays';
import { keptElementLines } from './kept-elements';
import { NftDefine, NftMap, NftTable, NftTableFacts } from './objects';

const PENDING = (d: NftDefine) => `# define ${d.name} = <${d.comment}>`;

export function renderDefines(defines: readonly NftDefine[]): string[] {
  return defines.map((d) => (d.value === null ? PENDING(d) : `define ${d.name} = ${d.value}  # ${d.comment}`));
}

const kindOf = (map: NftMap) => (map.set ? 'set' : 'map');

/**
 * A static map's declared capacity for `count` elements: twice the count, rounded up to a power of two (at least
 * 64). It changes only when the count crosses such a boundary; the reload then declares the map afresh.
 */
export function staticMapSize(count: number): number {
  let size = 64;
  while (size < 2 * count) size *= 2;
  return size;
}

function mapBody(map: NftMap, indent: string, lines: string[] = []): string[] {
  lines.push(`${indent}${map.typeof ? 'typeof' : 'type'} ${map.type}`);
  if (map.counter) lines.push(`${indent}counter`);
  if (map.dynamic) {
    lines.push(`${indent}size ${map.dynamic.size}`, `${indent}flags dynamic,timeout`, `${indent}timeout ${map.dynamic.timeoutSec}s`);
  } else if (map.size !== undefined) {
    lines.push(`${indent}size ${map.size}`);
  }
  const { elements } = map;
  if (elements.length) {
    lines.push(`${indent}elements = {`);
    // one line per element, written straight into `lines` (ten thousand VIPs: two maps of 10,000 elements)
    const prefix = `${indent}\t`;
    const last = elements.length - 1;
    for (let i = 0; i < last; i++) lines.push(prefix + elements[i].text + ',');
    lines.push(prefix + elements[last].text);
    lines.push(`${indent}}`);
  }
  return lines;
}

/**
 * The declarative form: `table … { … }`. Reviewers read this in the plan and the boot unit loads it, so it lists
 * every map element and rule in a stable order. Values known only at apply time appear as commented defines.
 */
export function renderNftDeclarative(table: NftTable): string {
  // a balancer's run renders its table for the boot file and again for the comparison: once is enough (tables are
  // not changed once built)
  let text = declaratives.get(table);
  if (text === undefined) {
    const head = [...table.header.map((h) => `# ${h}`), ...renderDefines(table.defines)].map((line) => `${line}\n`).join('');
    declaratives.set(table, (text = head + declarativeBody(table)));
  }
  return text;
}
const declaratives = new WeakMap<NftTable, string>();
/** `table … { … }`: what follows the header and the defines, shared by the tables withDefines makes of one table. */
const bodies = new WeakMap<NftTable, string>();

/**
 * The same table with other defines. Its rendered body is the one table's, rendered once: the agent renders a
 * balancer's table before the host's MACs are known and gives it them afterwards (withBalancerFacts).
 */
export function withDefines(table: NftTable, defines: readonly NftDefine[]): NftTable {
  const next = { ...table, defines };
  const body = bodies.get(table);
  if (body !== undefined) bodies.set(next, body);
  return next;
}

function declarativeBody(table: NftTable): string {
  let body = bodies.get(table);
  if (body === undefined) bodies.set(table, (body = renderBody(table)));
  return body;
}

function renderBody(table: NftTable): string {
  const lines = [`table ${table.family} ${table.name} {`];
  for (const counter of table.counters) lines.push(`\tcounter ${counter} {`, '\t}');
  for (const map of table.maps) {
    lines.push(`\t${kindOf(map)} ${map.name} {`);
    mapBody(map, '\t\t', lines);
    lines.push('\t}');
  }
  for (const chain of table.chains) {
    lines.push(`\tchain ${chain.name} {`);
    if (chain.hook) lines.push(`\t\t${chain.hook}`);
    pushAll(
      lines,
      chain.rules.map((r) => `\t\t${r}`),
    );
    lines.push('\t}');
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

export function hookNeedsRecreate(table: NftTable, facts: NftTableFacts): boolean {
  return table.chains.some((c) => c.hook !== undefined && facts.chains.includes(c.name) && facts.hooks[c.name] !== c.hook);
}

/**
 * A static map or set that must be declared afresh: the host has it as the other kind (a map that became a set),
 * or with another capacity (a running kernel may refuse to change it in place).
 */
function needsRedeclare(map: NftMap, facts: NftTableFacts): boolean {
  if (map.dynamic) return false;
  const existing = facts.maps.includes(map.name) ? 'map' : facts.sets.includes(map.name) ? 'set' : undefined;
  return existing !== undefined && (existing !== kindOf(map) || facts.sizes[map.name] !== map.size);
}

/**
 * The in-place reload: one `nft -f` transaction that adds what is missing, flushes and refills our chains and
 * static maps, and deletes objects that are no longer wanted. Dynamic maps (flows), named counters (per backend) and
 * the sets that keep their elements (per VIP) are never flushed, so established flows keep their backend and those
 * counters keep counting across reloads; the pool flow sets are refilled, and their counts start again. When a base
 * chain's hook must change (another interface), the table is deleted and created again in the same transaction.
 */
export function renderNftReload(table: NftTable, facts: NftTableFacts): string {
  const id = `${table.family} ${table.name}`;
  const lines = [...table.header.map((h) => `# ${h}`), ...renderDefines(table.defines)];
  const recreate = facts.exists && hookNeedsRecreate(table, facts);
  if (recreate) lines.push(`delete table ${id}`);
  const existing = recreate ? undefined : facts;
  const redeclared = new Set(existing ? table.maps.filter((m) => needsRedeclare(m, existing)).map((m) => m.name) : []);
  const declare = (map: NftMap) => `add ${kindOf(map)} ${id} ${map.name} { ${mapBody({ ...map, elements: [] }, '').join('; ')}; }`;
  lines.push(`add table ${id}`);
  for (const counter of table.counters) lines.push(`add counter ${id} ${counter}`);
  for (const map of table.maps) if (!redeclared.has(map.name)) lines.push(declare(map));
  for (const chain of table.chains) lines.push(chain.hook ? `add chain ${id} ${chain.name} { ${chain.hook} }` : `add chain ${id} ${chain.name}`);

  const wanted = new Map(table.maps.map((m) => [m.name, kindOf(m)]));
  const wantedChains = new Set(table.chains.map((c) => c.name));
  const wantedCounters = new Set(table.counters);
  const staleChains = existing?.chains.filter((c) => !wantedChains.has(c)) ?? [];
  const staleMaps = existing?.maps.filter((m) => !wanted.has(m)) ?? [];
  const staleSets = existing?.sets.filter((m) => !wanted.has(m)) ?? [];
  const staleCounters = existing?.counters.filter((c) => !wantedCounters.has(c)) ?? [];

  // Chains go empty first: a map or set that rules still reference cannot be deleted.
  for (const chain of [...table.chains.map((c) => c.name), ...staleChains]) lines.push(`flush chain ${id} ${chain}`);
  const kept = (map: NftMap) => map.keepElements && !redeclared.has(map.name);
  for (const map of table.maps) if (!map.dynamic && !redeclared.has(map.name) && !kept(map)) lines.push(`flush ${kindOf(map)} ${id} ${map.name}`);
  for (const name of staleMaps) lines.push(`flush map ${id} ${name}`);
  for (const name of staleSets) lines.push(`flush set ${id} ${name}`);
  for (const map of table.maps.filter((m) => redeclared.has(m.name))) {
    lines.push(`delete ${existing!.maps.includes(map.name) ? 'map' : 'set'} ${id} ${map.name}`, declare(map));
  }
  for (const map of table.maps) {
    if (kept(map)) pushAll(lines, keptElementLines(id, map, existing));
    else if (map.elements.length) lines.push(`add element ${id} ${map.name} { ${map.elements.map((e) => e.text).join(', ')} }`);
  }
  for (const chain of table.chains) for (const rule of chain.rules) lines.push(`add rule ${id} ${chain.name} ${rule}`);
  for (const chain of staleChains) lines.push(`delete chain ${id} ${chain}`);
  for (const map of staleMaps) lines.push(`delete map ${id} ${map}`);
  for (const set of staleSets) lines.push(`delete set ${id} ${set}`);
  for (const counter of staleCounters) lines.push(`delete counter ${id} ${counter}`);
  return lines.join('\n') + '\n';
}
