import { renderCommand } from '../shell';
import { HostState, parseHostState } from '../state';
import { parseDirLines, parseFiles, parseIpAddrJson, parseKeyValues, parseNeighJson, parseNftTableText, parseSysctlLines, IpAddrFacts, FileFact } from './parsers';
import { parseSections, sectionLine } from './sections';
import type { NftTableFacts } from '../../model';

/** What the runner needs to know about one host; gathered in a single round trip. */
export interface FactsRequest {
  readonly statePath: string;
  readonly files: readonly string[];
  readonly dirs: readonly string[];
  readonly sysctls: readonly string[];
  readonly nftTables: readonly { readonly family: string; readonly name: string }[];
  /** L2 backends whose MAC the balancer must resolve: ping them all at once, then read the neighbour table. */
  readonly neighbours?: { readonly dev: string; readonly ips: readonly string[] };
}

export interface NftFacts {
  readonly table: NftTableFacts;
  /** Hash of the live table's stateless listing without dynamic elements; null when the table is absent. */
  readonly listingHash: string | null;
}

export interface HostFacts {
  readonly now: number;
  readonly systemd: boolean;
  readonly kernel: string;
  readonly ipip: 'loaded' | 'available' | 'missing';
  readonly missingTools: readonly string[];
  readonly ip: IpAddrFacts;
  readonly sysctls: Readonly<Record<string, string | null>>;
  readonly files: Readonly<Record<string, FileFact>>;
  readonly dirs: Readonly<Record<string, boolean>>;
  readonly nft: Readonly<Record<string, NftFacts>>;
  readonly neighbours: Readonly<Record<string, string>>;
  readonly state: HostState | null;
  /** sha256 of the state file's bytes, or 'none'; the apply script refuses to run if it changed meanwhile. */
  readonly stateFingerprint: string;
}

/**
 * Strips what changes without anyone touching the configuration (flow map elements) from `nft -s list table`,
 * so that the hash of the rest detects edits made outside tula-dsr. Shared by the facts and apply scripts.
 */
export const NFT_LISTING_FILTER = `awk '/^\\tmap flows_/{f=1} f&&/^\\t\\telements = \\{/{s=1} s{if(/\\}$/)s=0;next} /^\\t\\}/{f=0} {print}'`;

export function nftListingHashCommand(family: string, name: string): string {
  return `{ ${renderCommand(['nft', '-s', 'list', 'table', family, name])} 2>/dev/null | ${NFT_LISTING_FILTER} | sha256sum | cut -c1-64; }`;
}

export const TOOLS = ['ip', 'nft', 'sysctl', 'flock', 'sha256sum', 'awk', 'sed'];

export function renderFactsScript(request: FactsRequest): string {
  const q = (s: string) => renderCommand([s]);
  const lines = [
    'export LC_ALL=C',
    sectionLine('basics'),
    'echo "now=$(date +%s)"',
    'echo "kernel=$(uname -r)"',
    '[ -d /run/systemd/system ] && echo systemd=yes || echo systemd=no',
    'if [ -d /sys/module/ipip ]; then echo ipip=loaded; elif modprobe -n ipip 2>/dev/null; then echo ipip=available; else echo ipip=missing; fi',
    `m=''; for t in ${TOOLS.join(' ')}; do command -v "$t" >/dev/null 2>&1 || m="$m $t"; done; echo "missing=$m"`,
    sectionLine('ip'),
    'ip -j -d addr show 2>/dev/null',
    sectionLine('sysctls'),
    ...request.sysctls.map((k) => `v=$(sysctl -n ${q(k)} 2>/dev/null) && echo ${q(`${k}=`)}"$v" || echo ${q(`${k}!`)}`),
    sectionLine('files'),
    `for f in ${[...request.files, request.statePath].map(q).join(' ')}; do [ -f "$f" ] || continue; echo "@@file $(sha256sum "$f" | cut -c1-64) $f"; sed 's/^/|/' "$f"; echo; done`,
    sectionLine('dirs'),
    `for d in ${request.dirs.map(q).join(' ')}; do [ -d "$d" ] && echo "yes $d" || echo "no $d"; done`,
  ];
  for (const t of request.nftTables) {
    const id = `${t.family}_${t.name}`;
    lines.push(sectionLine(`nft ${id}`), `nft -t list table ${q(t.family)} ${q(t.name)} 2>/dev/null`);
    lines.push(sectionLine(`nfthash ${id}`), `nft list table ${q(t.family)} ${q(t.name)} >/dev/null 2>&1 && ${nftListingHashCommand(t.family, t.name)}`);
  }
  if (request.neighbours?.ips.length) {
    const { dev, ips } = request.neighbours;
    lines.push(
      sectionLine('neigh'),
      `for ip in ${ips.map(q).join(' ')}; do ping -c 1 -W 1 "$ip" >/dev/null 2>&1 & done; wait`,
      `ip -j neigh show dev ${q(dev)} 2>/dev/null`,
    );
  }
  lines.push(sectionLine('end'));
  return lines.join('\n') + '\n';
}

export function parseHostFacts(output: string, request: FactsRequest): HostFacts {
  const sections = parseSections(output);
  if (!sections.has('end')) {
    throw new Error('the facts script did not finish: the output has no end marker');
  }
  const basics = parseKeyValues(sections.get('basics') ?? '');
  const files = parseFiles(sections.get('files') ?? '');
  const stateFile = files[request.statePath];
  const ourFiles = Object.fromEntries(Object.entries(files).filter(([p]) => p !== request.statePath));
  const dirs = parseDirLines(sections.get('dirs') ?? '');
  const nft: Record<string, NftFacts> = {};
  for (const t of request.nftTables) {
    const id = `${t.family}_${t.name}`;
    const table = parseNftTableText(sections.get(`nft ${id}`) ?? '');
    const hash = /\b[0-9a-f]{64}\b/.exec(sections.get(`nfthash ${id}`) ?? '')?.[0] ?? null;
    nft[`${t.family} ${t.name}`] = { table, listingHash: table.exists ? hash : null };
  }
  return {
    now: Number(basics.now) || Math.floor(Date.now() / 1000),
    systemd: basics.systemd === 'yes',
    kernel: basics.kernel ?? 'unknown',
    ipip: basics.ipip === 'loaded' || basics.ipip === 'available' ? basics.ipip : 'missing',
    missingTools: (basics.missing ?? '').trim().split(/\s+/).filter(Boolean),
    ip: parseIpAddrJson(sections.get('ip') ?? ''),
    sysctls: parseSysctlLines(sections.get('sysctls') ?? ''),
    files: ourFiles,
    dirs,
    nft,
    neighbours: request.neighbours ? parseNeighJson(sections.get('neigh') ?? '') : {},
    state: parseHostState(stateFile?.content),
    stateFingerprint: stateFile?.sha256 ?? 'none',
  };
}
