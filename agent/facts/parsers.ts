import { mayBeIpv6, parseIpAddress, type NftTableFacts } from '../../model';

/** Pure parsers of the tools' outputs. Each tolerates junk (warnings, banners) around the part it needs. */

/** Extracts the first JSON value (object or array) from text that may carry junk lines around it. */
export function extractJson(text: string): unknown {
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed.startsWith('{') && !trimmed.startsWith('[')) continue;
    try {
      return JSON.parse(trimmed);
    } catch {
      // not this line
    }
  }
  const start = text.search(/[[{]/);
  if (start < 0) return undefined;
  try {
    return JSON.parse(text.slice(start));
  } catch {
    return undefined;
  }
}

export interface InterfaceAddress {
  readonly dev: string;
  readonly ip: string;
  readonly prefix: number;
  /** Present (true) only for an IPv6 address whose preferred lifetime is over: the kernel never picks it as a source. */
  readonly deprecated?: true;
}

export interface IpAddrFacts {
  readonly addresses: InterfaceAddress[];
  /** Interface name → MAC (for links that have one), and up/down. */
  readonly links: Record<string, LinkFacts>;
}

export interface LinkFacts {
  readonly mac?: string;
  readonly up: boolean;
  /** Tunnels: `ipip`, `ip6tnl`, … with their endpoints. */
  readonly kind?: string;
  readonly local?: string;
  readonly remote?: string;
  /** ip6tnl: what it carries (`ip6ip6`, `ipip6`, `any`), and whether it leaves out the encapsulation limit option. */
  readonly proto?: string;
  readonly noEncapLimit?: boolean;
}

/** An address in the one text the spec side compares (RFC 5952 for IPv6); anything else as it came. */
export const canonicalIp = (ip: string): string => (mayBeIpv6(ip) ? (parseIpAddress(ip)?.text ?? ip) : ip);

/** Parses `ip -j -d link show` or `ip -j -d addr show` (one JSON array of interfaces, with addr_info for the latter). */
export function parseIpAddrJson(text: string): IpAddrFacts {
  const data = extractJson(text);
  const addresses: InterfaceAddress[] = [];
  const links: IpAddrFacts['links'] = {};
  if (!Array.isArray(data)) return { addresses, links };
  for (const item of data as Record<string, unknown>[]) {
    const dev = typeof item.ifname === 'string' ? item.ifname : undefined;
    if (!dev) continue;
    const flags = Array.isArray(item.flags) ? (item.flags as string[]) : [];
    const info =
      (item.linkinfo as
        { info_kind?: string; info_data?: { local?: string; remote?: string; proto?: string; ip6_tnl_f_ign_encap_limit?: boolean } } | undefined) ?? undefined;
    const data = info?.info_data;
    links[dev] = {
      mac: typeof item.address === 'string' && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(item.address) ? item.address : undefined,
      up: flags.includes('UP'),
      kind: info?.info_kind,
      local: data?.local === undefined ? undefined : canonicalIp(data.local),
      remote: data?.remote === undefined ? undefined : canonicalIp(data.remote),
      ...(info?.info_kind === 'ip6tnl' ? { proto: data?.proto, noEncapLimit: data?.ip6_tnl_f_ign_encap_limit === true } : {}),
    };
    for (const a of (Array.isArray(item.addr_info) ? item.addr_info : []) as Record<string, unknown>[]) {
      if ((a.family === 'inet' || a.family === 'inet6') && typeof a.local === 'string' && typeof a.prefixlen === 'number') {
        addresses.push({
          dev,
          ip: canonicalIp(a.local),
          prefix: a.prefixlen,
          ...(a.family === 'inet6' && a.preferred_life_time === 0 ? { deprecated: true } : {}),
        });
      }
    }
  }
  return { addresses, links };
}

/**
 * Parses the facts' address lines, `DEV ADDRESS/PREFIX [deprecated]` (`ip -o addr show` cut to its second and fourth
 * fields on the host: a twentieth of `ip -j` for a host carrying 10,000 VIPs), skipping anything else.
 */
export function parseAddressLines(text: string): InterfaceAddress[] {
  const addresses: InterfaceAddress[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\S+) ([0-9A-Fa-f:.]+)\/(\d{1,3})( deprecated)?$/.exec(line);
    if (m) addresses.push({ dev: m[1], ip: canonicalIp(m[2]), prefix: Number(m[3]), ...(m[4] ? { deprecated: true as const } : {}) });
  }
  return addresses;
}

/** Parses `ip -j neigh show` into IP → MAC for usable entries (not FAILED/INCOMPLETE). */
export function parseNeighJson(text: string): Record<string, string> {
  const data = extractJson(text);
  const result: Record<string, string> = {};
  if (!Array.isArray(data)) return result;
  for (const entry of data as Record<string, unknown>[]) {
    const state = Array.isArray(entry.state) ? (entry.state as string[]) : [];
    if (typeof entry.dst !== 'string' || typeof entry.lladdr !== 'string') continue;
    if (state.some((s) => s === 'FAILED' || s === 'INCOMPLETE')) continue;
    result[canonicalIp(entry.dst)] = entry.lladdr.toLowerCase();
  }
  return result;
}

/** Parses `key=value` lines (and `key!` for keys that do not exist on the host). */
export function parseSysctlLines(text: string): Record<string, string | null> {
  const result: Record<string, string | null> = {};
  for (const line of text.split('\n')) {
    const missing = /^([a-z0-9_./-]+)!$/i.exec(line.trim());
    if (missing) {
      result[missing[1]] = null;
      continue;
    }
    const match = /^([a-z0-9_./-]+)=(.*)$/i.exec(line.trim());
    if (match) result[match[1]] = match[2].trim().replace(/\s+/g, ' ');
  }
  return result;
}

const NO_TABLE: NftTableFacts = { exists: false, counters: [], maps: [], sets: [], chains: [], sizes: {}, hooks: {} };

/**
 * Parses `nft -t list table …` (terse: no elements): which objects exist and each base chain's hook line, as the
 * renderer writes it. Text, not JSON: nft 1.0.6's JSON omits a netdev chain's device, which a reload must compare.
 */
export function parseNftTableText(text: string): NftTableFacts {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => /^table \S+ \S+ \{$/.test(l));
  if (start < 0) return NO_TABLE;
  const facts = {
    exists: true,
    counters: [] as string[],
    maps: [] as string[],
    sets: [] as string[],
    chains: [] as string[],
    sizes: {} as Record<string, number>,
    hooks: {} as Record<string, string>,
  };
  let chain: string | null = null;
  let map: string | null = null;
  for (const line of lines.slice(start + 1)) {
    const object = /^\t(counter|map|set|chain) (\S+) \{$/.exec(line);
    if (object) {
      const [, kind, name] = object;
      if (kind === 'counter') facts.counters.push(name);
      else if (kind === 'map') facts.maps.push(name);
      else if (kind === 'set') facts.sets.push(name);
      else facts.chains.push(name);
      chain = kind === 'chain' ? name : null;
      map = kind === 'map' || kind === 'set' ? name : null;
      continue;
    }
    const size = /^\t\tsize (\d+)$/.exec(line);
    if (map && size) facts.sizes[map] = Number(size[1]);
    const hook = /^\t\t(type \S+ hook .*;)$/.exec(line);
    if (chain && hook) facts.hooks[chain] = hook[1];
    if (line === '}') break;
  }
  return facts;
}

/** A set element's key as nft lists it for tula-dsr's sets: typed parts (addresses, protocols, ports) joined by ` . `. */
const LISTED_KEY = /^[0-9A-Za-z:._-]+(?: \. [0-9A-Za-z:._-]+)*$/;

/**
 * The element keys of each set in a listing (`nft -s list table`, or the part keptElementsCommands prints), as nft
 * writes them, without their counters. A set without elements has an empty list.
 */
export function parseKeptElements(text: string): Record<string, string[]> {
  const elements: Record<string, string[]> = {};
  let current: string[] | null = null;
  let inside = false;
  for (const line of text.split('\n')) {
    const header = /^\t(set|map) (\S+) \{$/.exec(line);
    if (header) {
      current = header[1] === 'set' ? (elements[header[2]] = []) : null;
      inside = false;
      continue;
    }
    if (!current) continue;
    if (/^\t\telements = \{/.test(line)) inside = true;
    if (!inside) continue;
    const body = line.replace(/^\s*elements = \{/, '').replace(/\}\s*$/, '');
    for (const item of body.split(',')) {
      const key = item.replace(/\s+counter(\s+packets \d+ bytes \d+)?\s*$/, '').trim();
      // a key goes back into a transaction (a stale element is deleted by it): addresses, names and numbers only
      if (LISTED_KEY.test(key)) current.push(key);
    }
    if (/\}\s*$/.test(line)) inside = false;
  }
  return elements;
}

export interface FileFact {
  readonly path: string;
  readonly sha256: string;
  readonly content: string;
}

/**
 * Parses the files section: `@@file <sha256> <path>` followed by the content with each line prefixed by `|`
 * (so that no content line can look like a marker), or `@@same <sha256> <path>` for a file the agent has a copy of
 * (`known`) that still hashes the same.
 */
export function parseFiles(text: string, known: Readonly<Record<string, FileFact>> = {}): Record<string, FileFact> {
  const files: Record<string, FileFact> = {};
  let current: { path: string; sha256: string; lines: string[] } | null = null;
  const flush = () => {
    if (current) files[current.path] = { path: current.path, sha256: current.sha256, content: current.lines.join('\n') + (current.lines.length ? '\n' : '') };
    current = null;
  };
  for (const line of text.split('\n')) {
    const header = /^@@(file|same) ([0-9a-f]{64}) (.+)$/.exec(line);
    if (header?.[1] === 'same') {
      flush();
      const copy = known[header[3]];
      // the facts script compares with the hash the agent sent: anything else is a corrupted answer
      if (copy?.sha256 !== header[2]) throw new Error(`the facts say ${header[3]} is unchanged, but the agent has no copy with sha256 ${header[2]}`);
      files[copy.path] = copy;
    } else if (header) {
      flush();
      current = { path: header[3], sha256: header[2], lines: [] };
    } else if (current && line.startsWith('|')) {
      current.lines.push(line.slice(1));
    }
  }
  flush();
  return files;
}

export type ModuleState = 'loaded' | 'available' | 'missing';

/** Parses `<module> loaded|available|missing` lines. */
export function parseModuleLines(text: string): Record<string, ModuleState> {
  const result: Record<string, ModuleState> = {};
  for (const line of text.split('\n')) {
    const match = /^([a-z0-9_]+) (loaded|available|missing)$/.exec(line.trim());
    if (match) result[match[1]] = match[2] as ModuleState;
  }
  return result;
}

/** Parses `key=value` pairs one per line (generic small facts). */
export function parseKeyValues(text: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)=(.*)$/.exec(line.trim());
    if (match) result[match[1]] = match[2];
  }
  return result;
}

/** Parses `yes PATH` / `no PATH` lines: which directories exist. */
export function parseDirLines(text: string): Record<string, boolean> {
  const result: Record<string, boolean> = {};
  for (const line of text.split('\n')) {
    const match = /^(yes|no) (\/.*)$/.exec(line);
    if (match) result[match[2]] = match[1] === 'yes';
  }
  return result;
}
