import { NftChain, NftDefine, NftElement, NftMap, NftTable } from './objects';

/**
 * Reads back a table that renderNftDeclarative wrote (the balancer's boot ruleset, which also carries the
 * `table …` / `delete table …` lines that make it reloadable): the table the last apply loaded, without the spec
 * that built it. Elements come back without the VIP or pool that owns them, which the text does not name. The
 * caller must check the result against the hash of what was loaded (render it again): this reader accepts only the
 * renderer's own layout and reports where anything else starts, but a file edited within that layout reads as
 * another table. An error text when the file is not in that layout.
 */
export function parseNftDeclarative(text: string): NftTable | string {
  const lines = text.split('\n');
  const header: string[] = [];
  const defines: NftDefine[] = [];
  let at = 0;
  let table: RegExpExecArray | null = null;
  for (; at < lines.length && !table; at++) {
    const line = lines[at];
    let m: RegExpExecArray | null;
    if ((table = /^table (netdev|ip|inet) (\S+) \{$/.exec(line))) break;
    if ((m = /^# define (\S+) = <(.*)>$/.exec(line))) defines.push({ name: m[1], value: null, comment: m[2] });
    else if ((m = /^define (\S+) = (.*?) {2}# (.*)$/.exec(line))) defines.push({ name: m[1], value: m[2], comment: m[3] });
    else if (line.startsWith('# ')) header.push(line.slice(2));
    else if (line !== '' && !/^(delete )?table (netdev|ip|inet) \S+$/.test(line))
      return `line ${at + 1} is not part of a declarative table: ${JSON.stringify(line.slice(0, 80))}`;
  }
  if (!table) return 'it declares no table';
  const counters: string[] = [];
  const maps: NftMap[] = [];
  const chains: NftChain[] = [];
  const unexpected = () => `line ${at + 1} is not in the layout tula-dsr writes: ${JSON.stringify((lines[at] ?? '(end of file)').slice(0, 80))}`;
  for (at++; at < lines.length; at++) {
    const line = lines[at];
    let m: RegExpExecArray | null;
    if (line === '') break;
    if (line === '}') {
      const trailing = lines.findIndex((l, i) => i > at && l !== '');
      if (trailing < 0) return { family: table[1] as NftTable['family'], name: table[2], header, defines, counters, maps, chains };
      at = trailing;
      return unexpected();
    }
    if ((m = /^\tcounter (\S+) \{$/.exec(line)) && lines[at + 1] === '\t}') {
      counters.push(m[1]);
      at++;
    } else if ((m = /^\t(map|set) (\S+) \{$/.exec(line))) {
      const map = readMap(lines, at + 1, m[2], m[1] === 'set');
      if (typeof map === 'number') {
        at = map;
        return unexpected();
      }
      maps.push(map.map);
      at = map.end;
    } else if ((m = /^\tchain (\S+) \{$/.exec(line))) {
      const rules: string[] = [];
      for (at++; at < lines.length && lines[at] !== '\t}'; at++) {
        if (!lines[at].startsWith('\t\t')) return unexpected();
        rules.push(lines[at].slice(2));
      }
      const hook = rules.length && rules[0].startsWith('type ') ? rules.shift() : undefined;
      chains.push({ name: m[1], ...(hook !== undefined && { hook }), rules });
    } else return unexpected();
  }
  return 'the table is not closed';
}

/** One map or set's body from `start` (the line after its opening); its last line's index, or where it went wrong. */
function readMap(lines: readonly string[], start: number, name: string, set: boolean): { map: NftMap; end: number } | number {
  let at = start;
  const m = /^\t\t(type|typeof) (.+)$/.exec(lines[at] ?? '');
  if (!m) return at;
  let counter = false;
  let size: number | undefined;
  let dynamic: NftMap['dynamic'];
  for (at++; ; at++) {
    const line = lines[at];
    let n: RegExpExecArray | null;
    if (line === '\t\tcounter') counter = true;
    else if ((n = /^\t\tsize (\d+)$/.exec(line))) size = Number(n[1]);
    else if (line === '\t\tflags dynamic,timeout' && size !== undefined && (n = /^\t\ttimeout (\d+)s$/.exec(lines[at + 1] ?? ''))) {
      dynamic = { timeoutSec: Number(n[1]), size };
      size = undefined;
      at++;
    } else break;
  }
  const elements: NftElement[] = [];
  if (lines[at] === '\t\telements = {') {
    for (at++; at < lines.length && lines[at] !== '\t\t}'; at++) {
      if (!lines[at].startsWith('\t\t\t')) return at;
      elements.push({ text: lines[at].slice(3) });
    }
    // every element but the last ends with the comma that separates it from the next
    for (let i = 0; i < elements.length - 1; i++) {
      if (!elements[i].text.endsWith(',')) return start;
      elements[i] = { text: elements[i].text.slice(0, -1) };
    }
    at++;
  }
  if (lines[at] !== '\t}') return at;
  const map: NftMap = {
    name,
    ...(set && { set }),
    ...(counter && { counter }),
    type: m[2],
    ...(m[1] === 'typeof' && { typeof: true }),
    ...(dynamic && { dynamic }),
    ...(size !== undefined && { size }),
    elements,
  };
  return { map, end: at };
}
