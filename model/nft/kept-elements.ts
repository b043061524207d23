import { parseIpAddress } from '../address';
import { NftMap, NftTableFacts } from './objects';

/**
 * An element key in one spelling whoever wrote it: nft lists `2001:db8::1 . tcp . 80` where a spec may say
 * `2001:DB8:0::1`, so each part that is an address takes its canonical text, a number its decimal one.
 */
export function canonicalElementKey(text: string): string {
  return text.split(' . ').map(canonicalPart).join(' . ');
}

/** Already canonical, and the most common parts by far: a dotted quad without leading zeros, a lower-case word, a number. */
const PLAIN_PART = /^(?:(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)|[a-z]+|[1-9]\d*|0)$/;

function canonicalPart(part: string): string {
  const trimmed = part.trim();
  if (PLAIN_PART.test(trimmed)) return trimmed;
  const address = parseIpAddress(trimmed);
  if (address) return address.text;
  return /^\d+$/.test(trimmed) ? String(Number(trimmed)) : trimmed.toLowerCase();
}

/**
 * The reload's lines for a set that keeps its elements (NftMap.keepElements): it deletes, by the key the host lists,
 * each element the table no longer wants, and adds every wanted one. `add` leaves an element that exists as it is,
 * counter included; a new one starts from zero, or from the named counter it takes over at an upgrade.
 */
export function keptElementLines(id: string, map: NftMap, facts: NftTableFacts | undefined): string[] {
  const listed = facts?.elements?.[map.name] ?? [];
  // nft usually lists a key as the renderer wrote it: only the others need their canonical form (ten thousand
  // addresses parsed would double the time a reload of ten thousand VIPs takes to render)
  const texts = new Set(map.elements.map((e) => e.text));
  let canonical: Set<string> | undefined;
  const wanted = (key: string) => texts.has(key) || (canonical ??= new Set([...texts].map(canonicalElementKey))).has(canonicalElementKey(key));
  const stale = listed.filter((key) => !wanted(key));
  const counters = facts?.counterValues;
  const carried = (owner: string | undefined) => (counters && map.takesOver && owner ? counters[`${map.takesOver}${owner}`] : undefined);
  const adds = map.elements.map((e) => {
    const value = carried(e.vip);
    return value ? `${e.text} counter packets ${value.packets} bytes ${value.bytes}` : e.text;
  });
  return [
    ...(stale.length ? [`delete element ${id} ${map.name} { ${stale.join(', ')} }`] : []),
    ...(adds.length ? [`add element ${id} ${map.name} { ${adds.join(', ')} }`] : []),
  ];
}
