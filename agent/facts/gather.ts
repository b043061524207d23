import { SHA256_OF_STDIN, readLineCommand, renderCommand, sha256AssignCommand } from '../../model/shell';
import { parseNftCounters } from '../../model/stats';
import { HostState, STATE_DIR, journalPath, mergeJournal, readHostState } from '../state';
import {
  parseAddressLines,
  parseDirLines,
  parseFiles,
  parseIpAddrJson,
  parseKeyValues,
  parseModuleLines,
  parseNeighJson,
  parseKeptElements,
  parseNftTableText,
  parseSysctlLines,
  IpAddrFacts,
  FileFact,
  ModuleState,
} from './parsers';
import { parseSections, sectionLine } from '../../model/sections';
import { TUNNEL_MODULES, type NftTableFacts } from '../../model';
import { generationFactsCommands, generationRearmCommands, parseGenerationFacts } from './nft-generation';

const EMPTY_TABLE_FACTS: NftTableFacts = { exists: false, counters: [], maps: [], sets: [], chains: [], sizes: {}, hooks: {} };

export interface NftTableRequest {
  readonly family: string;
  readonly name: string;
  /**
   * Skip listing the table while the kernel's ruleset generation is still the one recorded after tula-dsr's own last
   * load of it (see nft-generation.ts).
   */
  readonly generation?: boolean;
  /** Sets whose element keys a reload needs (those it never flushes: NftMap.keepElements). */
  readonly keptSets?: readonly string[];
  /** Named counters whose values a reload carries over (NftMap.takesOver), by prefix; read only when the table has one. */
  readonly takenOver?: string;
}

/** What the runner needs to know about one host; gathered in a single round trip. */
export interface FactsRequest {
  readonly statePath: string;
  readonly files: readonly string[];
  readonly dirs: readonly string[];
  readonly sysctls: readonly string[];
  readonly nftTables: readonly NftTableRequest[];
  /**
   * The agent's copies of files (see FileCache): a file that still hashes the same on the host does not travel back,
   * and the facts hold the copy.
   */
  readonly known?: Readonly<Record<string, FileFact>>;
  /** Files whose hash is enough (programs): their content does not travel back. */
  readonly hashOnlyFiles?: readonly string[];
  /** Check mode: the facts write nothing on the host (not even the generation record a matching listing renews). */
  readonly readOnly?: boolean;
  /**
   * Whether the balancer runtime runs (systemd unit, or the agent's supervisor and its PID file), and with `version`,
   * Node's version (starting node costs 30 ms: asked only where the runtime is wanted).
   */
  readonly runtime?: { readonly unit: string; readonly pidFile: string; readonly supervisor: string; readonly version?: boolean };
  /** Whether the keepalived of a balancer pair member runs (its unit, or its pid file), and with `version`, which is installed. */
  readonly keepalived?: { readonly unit: string; readonly pidFile: string; readonly version?: boolean };
  /** The kernel modules whose state to report (the tunnels' modules, where tunnels are wanted). @default KERNEL_MODULES */
  readonly modules?: readonly string[];
  /** L2 backends whose MAC the balancer must resolve: ping them all at once, then read the neighbour table. */
  readonly neighbours?: { readonly dev: string; readonly ips: readonly string[] };
}

export interface NftFacts {
  readonly table: NftTableFacts;
  /** Hash of the live table's stateless listing without dynamic elements; null when the table is absent. */
  readonly listingHash: string | null;
  /** Only when the live listing differs from the one recorded at apply: both texts, for the drift diff. */
  readonly live?: string;
  readonly recorded?: string;
  /** The kernel's ruleset generation now, where the host could tell (tables requested with `generation`). */
  readonly generation?: number;
  /**
   * The table is exactly as tula-dsr's last load left it: the generation has not moved since (then the table was not
   * listed, and `table` says only that it exists), or its listing matched and `listed`. The generation that vouches
   * for it now, and the ruleset hash that load recorded.
   */
  readonly unchangedSince?: { readonly generation: number; readonly rulesetHash: string; readonly listed: boolean };
}

export interface HostFacts {
  readonly now: number;
  readonly systemd: boolean;
  readonly kernel: string;
  /** The state of each of KERNEL_MODULES (absent: missing). */
  readonly modules: Readonly<Record<string, ModuleState>>;
  readonly missingTools: readonly string[];
  readonly ip: IpAddrFacts;
  readonly sysctls: Readonly<Record<string, string | null>>;
  readonly files: Readonly<Record<string, FileFact>>;
  readonly dirs: Readonly<Record<string, boolean>>;
  readonly nft: Readonly<Record<string, NftFacts>>;
  readonly neighbours: Readonly<Record<string, string>>;
  readonly state: HostState | null;
  /** The state file as read (the base of its patch: see writeContentCommand); absent when there is none. */
  readonly stateFile?: FileFact;
  /** sha256 of the state file's bytes, or 'none'; the apply script refuses to run if it changed meanwhile. */
  readonly stateFingerprint: string;
  /** An interrupted run left a journal; `state` already includes it, and this run must record the merged state. */
  readonly journalPending: boolean;
  /** Octal mode of STATE_DIR (`755`), or null when it does not exist. */
  readonly stateDirMode: string | null;
  /** When requested: Node's version (absent: not installed), the runtime unit's state, the supervisor's PID. */
  readonly runtime?: { readonly node?: string; readonly unitState?: string; readonly supervisorPid?: number };
  /** When requested: keepalived's version line (absent: not installed), its unit's state, the live pid of its pid file. */
  readonly keepalived?: { readonly version?: string; readonly unitState?: string; readonly pid?: number };
  /** The state file or journal exists but cannot be read: the path and why. The runner then refuses to act. */
  readonly stateProblem?: { readonly path: string; readonly problem: string };
}

/**
 * Strips what changes without anyone touching the configuration from `nft -s list table`: the elements of dynamic
 * maps (open and closing flows, which the packet path writes) and of the maps the balancer runtime rewrites (`…_rt`:
 * the slots of pools it manages), so that the hash of the rest detects edits made outside tula-dsr. Shared by the
 * facts and apply scripts.
 */
export const NFT_LISTING_FILTER = `awk '/^\\t(map|set) /{f=0} /^\\t(map|set) [a-z0-9_]+_rt \\{/{f=1} /^\\t\\tflags .*dynamic/{f=1} f&&/^\\t\\telements = \\{/{s=1} s{if(/\\}$/)s=0;next} {print}'`;

/** Where the apply keeps the table's listing as loaded, so that check can show what changed behind its back. */
export function nftListingFile(family: string, name: string): string {
  return `${STATE_DIR}/${family}-${name}.listing`;
}

// After loading, the table exists: an error listing it must reach stderr (the state step fails on it).
const listingCommand = (family: string, name: string) => `${renderCommand(['nft', '-s', 'list', 'table', family, name])} | ${NFT_LISTING_FILTER}`;

/** After loading: records the listing and prints its hash (for the state file). */
export function nftRecordListingCommand(family: string, name: string): string {
  return `{ ${listingCommand(family, name)} | tee ${renderCommand([nftListingFile(family, name)])} | ${SHA256_OF_STDIN}; }`;
}

/** Drops every set and map's elements from a listing: what `nft -t` prints, without listing the table again. */
const NFT_TERSE_FILTER = `awk '/^\\t\\telements = \\{/{s=1} s{if(/\\}$/)s=0;next} {print}'`;

/**
 * Facts about one table from a single `nft -s list table` (listing a table with 100,000 elements takes seconds):
 * its objects (the listing without elements); the hash of the listing as recorded after loading; and when that
 * differs from the recorded listing, both texts (so that check can show a diff). Only drift costs bytes on the wire.
 * A table that does not exist gives empty sections, at the cost of one `nft` that fails in a few ms (not `nft list
 * tables` first: it loads the whole ruleset, 0.2 s with 100,000 elements). One temp file, `$t`, serves every table.
 */
function nftFactsCommands(t: NftTableRequest, id: string): string[] {
  const { family, name } = t;
  const recorded = renderCommand([nftListingFile(family, name)]);
  const listed = `${renderCommand(['nft', '-s', 'list', 'table', family, name])} > "$t" 2>/dev/null && e=yes || e=no`;
  return [
    listed,
    sectionLine(`nft ${id}`),
    `if [ $e = yes ]; then ${NFT_TERSE_FILTER} < "$t"; fi`,
    sectionLine(`nfthash ${id}`),
    'if [ $e = yes ]; then',
    `  ${NFT_LISTING_FILTER} < "$t" > "$t.l"; h=$(sha256sum < "$t.l") && h=\${h%% *}; echo "$h"`,
    `  if [ -f ${recorded} ] && { ${sha256AssignCommand('hr', nftListingFile(family, name))}; [ "$h" != "$hr" ]; }; then`,
    `    ${sectionLine(`nftlive ${id}`)}; sed 's/^/|/' "$t.l"; ${sectionLine(`nftrecorded ${id}`)}; sed 's/^/|/' ${recorded}`,
    '  fi',
    'fi',
    ...keptElementsCommands(t, id),
  ];
}

const NFT_OBJECT_NAME = /^[a-z0-9_]+$/;

/**
 * From the listing in "$t": the element blocks of the sets a reload never flushes, under their `set NAME {` lines, and
 * the values of the named counters a reload takes over, only when the table has one (an upgrade: listing counters
 * costs what listing the table does).
 */
function keptElementsCommands(t: NftTableRequest, id: string): string[] {
  const sets = t.keptSets ?? [];
  const names = [...sets, ...(t.takenOver ? [t.takenOver] : [])];
  const bad = names.find((n) => !NFT_OBJECT_NAME.test(n));
  if (bad !== undefined) throw new Error(`keptElementsCommands: ${JSON.stringify(bad)} is not an nft object name`);
  const lines: string[] = [];
  if (sets.length) {
    const program = String.raw`/^\t(map|set) /{k=0} /^\tset (${sets.join('|')}) \{$/{k=1; print} k&&/^\t\telements = \{/{s=1} s{print; if(/\}$/)s=0}`;
    lines.push(sectionLine(`nftkept ${id}`), `if [ $e = yes ]; then ${renderCommand(['awk', program])} < "$t"; fi`);
  }
  if (t.takenOver) {
    const has = renderCommand(['grep', '-q', `^\tcounter ${t.takenOver}`]);
    const list = renderCommand(['nft', 'list', 'counters', 'table', t.family, t.name]);
    lines.push(sectionLine(`nftcounters ${id}`), `if [ $e = yes ] && ${has} "$t"; then ${list} 2>/dev/null; fi`);
  }
  return lines;
}

/**
 * Each file that exists: its hash, then its text (lines prefixed by `|`); only its hash when the hash is enough
 * (`hashOnly`), or `@@same` when the agent has that text (`known`). One sha256sum for all of them: every process
 * the facts start costs milliseconds on a small host.
 */
function filesCommands(paths: readonly string[], hashOnly: readonly string[], known: Readonly<Record<string, FileFact>>): string[] {
  const q = (s: string) => renderCommand([s]);
  const same = paths.filter((p) => known[p]).map((p) => q(`${p} ${known[p].sha256}`));
  const only = hashOnly.map((p) => `${q(`${p} `)}*`);
  return [
    `sha256sum -- ${[...paths, ...hashOnly].map(q).join(' ')} 2>/dev/null | while read -r h f; do case "$f $h" in`,
    ...(same.length ? [`  ${same.join('|')}) echo "@@same $h $f";;`] : []),
    ...(only.length ? [`  ${only.join('|')}) echo "@@file $h $f";;`] : []),
    `  *) echo "@@file $h $f"; sed 's/^/|/' "$f"; echo;;`,
    'esac; done',
  ];
}

/** The facts' temp file for nft listings: this prefix and the shell's pid. */
export const FACTS_TEMP_PREFIX = '/run/tula-dsr.facts.';

export const TOOLS = ['ip', 'nft', 'sysctl', 'flock', 'sha256sum', 'awk', 'sed'];

/** The kernel modules whose presence the facts report: the L3 tunnels' (IPIP, ip6tnl). */
export const KERNEL_MODULES: readonly string[] = Object.values(TUNNEL_MODULES);

/** A sysctl key's file, as sysctl maps it: dots are folders, a slash stands for a dot in a name (`eth0/100`). */
export function sysctlPath(key: string): string {
  return `/proc/sys/${key.replace(/[./]/g, (c) => (c === '.' ? '/' : '.'))}`;
}

function modulesCommands(modules: readonly string[]): string[] {
  const bad = modules.find((m) => !/^[a-z0-9_]+$/.test(m));
  if (bad !== undefined) throw new Error(`modulesCommands: ${JSON.stringify(bad)} is not a module name`);
  if (!modules.length) return [];
  return [
    sectionLine('modules'),
    // busybox modprobe has no -n (dry run): then look the module up in modules.dep
    `for m in ${modules.join(' ')}; do if [ -d "/sys/module/$m" ]; then s=loaded; elif modprobe -n "$m" 2>/dev/null || grep -qs "/$m\\.ko" "/lib/modules/$(uname -r)/modules.dep"; then s=available; else s=missing; fi; echo "$m $s"; done`,
  ];
}

export function renderFactsScript(request: FactsRequest): string {
  const q = (s: string) => renderCommand([s]);
  const lines = [
    'export LC_ALL=C',
    sectionLine('basics'),
    // the host's clock dates the addresses a state file retires; a host without one (a first run) needs no `date`
    `if [ -e ${q(request.statePath)} ] || [ -e ${q(journalPath(request.statePath))} ]; then echo "now=$(date +%s)"; fi`,
    // the shell reads what uname -r prints
    `k=; if [ -r /proc/sys/kernel/osrelease ]; then read -r k < /proc/sys/kernel/osrelease; else k=$(uname -r); fi; echo "kernel=$k"`,
    '[ -d /run/systemd/system ] && echo systemd=yes || echo systemd=no',
    // a first run's host has no state folder: no process to find that out
    `if [ -d ${q(STATE_DIR)} ]; then echo "statedir=$(stat -c %a ${q(STATE_DIR)} 2>/dev/null)"; else echo statedir=; fi`,
    `m=''; for t in ${TOOLS.join(' ')}; do command -v "$t" >/dev/null 2>&1 || m="$m $t"; done; echo "missing=$m"`,
    ...modulesCommands(request.modules ?? KERNEL_MODULES),
    sectionLine('ip'),
    'ip -j -d link show 2>/dev/null',
    sectionLine('addr'),
    // two fields a line: a host carrying 10,000 VIPs lists 0.2 MB instead of the 1.5 MB of `ip -j -d addr show`
    // (a point-to-point address, `inet A peer B/P`, is A with B's prefix length, as `ip -j` gives it); a deprecated
    // IPv6 address (preferred_lft 0, as the balancer adds its IPv6 VIPs) says so in a third field
    `ip -o addr show 2>/dev/null | awk '{ a = $4; if ($5 == "peer") { split($6, p, "/"); a = $4 "/" p[2] } print $2, a ($0 ~ / deprecated / ? " deprecated" : "") }'`,
    sectionLine('sysctls'),
    // read by the shell itself, as sysctl -n reads them: no process per key (dash's read of a /proc file returns 1
    // although it read the line, hence the test first)
    ...request.sysctls.map(
      (k) => `if [ -r ${q(sysctlPath(k))} ]; then v=; read -r v < ${q(sysctlPath(k))}; echo ${q(`${k}=`)}"$v"; else echo ${q(`${k}!`)}; fi`,
    ),
    sectionLine('files'),
    ...filesCommands([...request.files, request.statePath, journalPath(request.statePath)], request.hashOnlyFiles ?? [], request.known ?? {}),
    sectionLine('dirs'),
    `for d in ${request.dirs.map(q).join(' ')}; do [ -d "$d" ] && echo "yes $d" || echo "no $d"; done`,
  ];
  // the tables' one temp file, made by the first listing and removed after the last: in /run, which only root may
  // write (as the host lock), named by the shell's pid instead of a mktemp process
  if (request.nftTables.length) lines.push(`t=${q(FACTS_TEMP_PREFIX)}$$`);
  for (const t of request.nftTables) {
    const id = `${t.family}_${t.name}`;
    if (t.generation) {
      lines.push(
        sectionLine(`nftgen ${id}`),
        ...generationFactsCommands(t.family, t.name, request.statePath, journalPath(request.statePath)),
        'if [ $unchanged = no ]; then',
        ...nftFactsCommands(t, id),
        ...(request.readOnly ? [] : generationRearmCommands(t.family, t.name, request.statePath, journalPath(request.statePath))),
        'fi',
      );
    } else lines.push(...nftFactsCommands(t, id));
  }
  if (request.nftTables.length) lines.push('if [ -e "$t" ] || [ -e "$t.l" ]; then rm -f "$t" "$t.l"; fi');
  if (request.runtime) {
    const { unit, pidFile, supervisor, version } = request.runtime;
    lines.push(
      sectionLine('runtime'),
      ...(version ? ['command -v node >/dev/null 2>&1 && echo "node=$(node --version 2>/dev/null)"'] : []),
      `[ -d /run/systemd/system ] && echo "unit=$(systemctl is-active ${q(unit)} 2>/dev/null)"`,
      // the PID file must name a live supervisor: a PID reused by another process does not count
      `${readLineCommand('p', pidFile)}; [ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -qa ${q(supervisor)} "/proc/$p/cmdline" 2>/dev/null && echo "supervisor=$p"`,
    );
  }
  if (request.keepalived) {
    const { unit, pidFile, version } = request.keepalived;
    lines.push(
      sectionLine('keepalived'),
      ...(version ? ['command -v keepalived >/dev/null 2>&1 && echo "version=$(keepalived -v 2>&1 | head -n 1)"'] : []),
      `[ -d /run/systemd/system ] && echo "unit=$(systemctl is-active ${q(unit)} 2>/dev/null)"`,
      // a pid reused by another process does not count
      `${readLineCommand('p', pidFile)}; [ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -qa keepalived "/proc/$p/cmdline" 2>/dev/null && echo "pid=$p"`,
    );
  }
  if (request.neighbours?.ips.length) {
    const { dev, ips } = request.neighbours;
    lines.push(
      sectionLine('neigh'),
      // only backends without a usable entry are pinged (an answer to ping takes a round trip, a lost one a second);
      // an IPv6 backend answers a Neighbour Solicitation (ping -6), and its entry is in the same table (both families listed)
      `k=" $(ip neigh show dev ${q(dev)} 2>/dev/null | awk '/ lladdr / && $NF != "FAILED" && $NF != "INCOMPLETE" { printf "%s ", $1 }')"`,
      `for ip in ${ips.map(q).join(' ')}; do case "$k" in *" $ip "*) continue;; esac; case "$ip" in *:*) f=-6;; *) f=-4;; esac; ping "$f" -c 1 -W 1 "$ip" >/dev/null 2>&1 & done; wait`,
      `ip -j neigh show dev ${q(dev)} 2>/dev/null`,
    );
  }
  lines.push(sectionLine('end'));
  return lines.join('\n') + '\n';
}

function parseRuntimeFacts(text: string): NonNullable<HostFacts['runtime']> {
  const kv = parseKeyValues(text);
  const pid = Number(kv.supervisor);
  return { node: kv.node || undefined, unitState: kv.unit || undefined, supervisorPid: Number.isInteger(pid) && pid > 1 ? pid : undefined };
}

function parseKeepalivedFacts(text: string): NonNullable<HostFacts['keepalived']> {
  const kv = parseKeyValues(text);
  const pid = Number(kv.pid);
  return { version: kv.version || undefined, unitState: kv.unit || undefined, pid: Number.isInteger(pid) && pid > 1 ? pid : undefined };
}

/** The table facts with the kept sets' element keys and the values of the counters they take over, as requested. */
function withKeptElements(table: NftTableFacts, t: NftTableRequest, kept: string | undefined, counters: string | undefined): NftTableFacts {
  if (!table.exists || (!t.keptSets?.length && !t.takenOver)) return table;
  const prefix = t.takenOver;
  const values = prefix && counters ? [...parseNftCounters(counters)].filter(([name]) => name.startsWith(prefix)) : [];
  return {
    ...table,
    elements: parseKeptElements(kept ?? ''),
    ...(values.length ? { counterValues: Object.fromEntries(values) } : {}),
  };
}

export function parseHostFacts(output: string, request: FactsRequest): HostFacts {
  const sections = parseSections(output);
  if (!sections.has('end')) {
    throw new Error('the facts script did not finish: the output has no end marker');
  }
  const basics = parseKeyValues(sections.get('basics') ?? '');
  const files = parseFiles(sections.get('files') ?? '', request.known);
  const stateFile = files[request.statePath];
  const recorded = readHostState(stateFile?.content);
  const journalRead = readHostState(files[journalPath(request.statePath)]?.content);
  const journal = 'state' in journalRead ? journalRead.state : null;
  const state = 'state' in recorded ? recorded.state : null;
  const stateProblem =
    'problem' in recorded
      ? { path: request.statePath, problem: recorded.problem }
      : 'problem' in journalRead
        ? { path: journalPath(request.statePath), problem: journalRead.problem }
        : undefined;
  const ourFiles = Object.fromEntries(Object.entries(files).filter(([p]) => p !== request.statePath && p !== journalPath(request.statePath)));
  const dirs = parseDirLines(sections.get('dirs') ?? '');
  const nft: Record<string, NftFacts> = {};
  for (const t of request.nftTables) {
    const id = `${t.family}_${t.name}`;
    const table = withKeptElements(parseNftTableText(sections.get(`nft ${id}`) ?? ''), t, sections.get(`nftkept ${id}`), sections.get(`nftcounters ${id}`));
    const hash = /\b[0-9a-f]{64}\b/.exec(sections.get(`nfthash ${id}`) ?? '')?.[0] ?? null;
    const text = (section: string) => {
      const body = sections.get(section);
      return body === undefined
        ? undefined
        : body
            .split('\n')
            .filter((l) => l.startsWith('|'))
            .map((l) => l.slice(1))
            .join('\n') + '\n';
    };
    const generation = parseGenerationFacts(sections.get(`nftgen ${id}`) ?? '', sections.get(`nftrearm ${id}`));
    nft[`${t.family} ${t.name}`] =
      generation.unchangedSince?.listed === false
        ? { table: { ...EMPTY_TABLE_FACTS, exists: true }, listingHash: null, ...generation }
        : {
            table,
            listingHash: table.exists ? hash : null,
            live: text(`nftlive ${id}`),
            recorded: text(`nftrecorded ${id}`),
            ...generation,
          };
  }
  return {
    // without a state file the host's clock is not asked for (nothing to date): this machine's stands in, unused
    now: Number(basics.now) || Math.floor(Date.now() / 1000),
    systemd: basics.systemd === 'yes',
    kernel: basics.kernel ?? 'unknown',
    modules: parseModuleLines(sections.get('modules') ?? ''),
    missingTools: (basics.missing ?? '').trim().split(/\s+/).filter(Boolean),
    ip: { links: parseIpAddrJson(sections.get('ip') ?? '').links, addresses: parseAddressLines(sections.get('addr') ?? '') },
    sysctls: parseSysctlLines(sections.get('sysctls') ?? ''),
    files: ourFiles,
    dirs,
    nft,
    neighbours: request.neighbours ? parseNeighJson(sections.get('neigh') ?? '') : {},
    state: journal ? mergeJournal(state, journal) : state,
    ...(stateFile ? { stateFile } : {}),
    stateFingerprint: stateFile?.sha256 ?? 'none',
    journalPending: journal !== null,
    stateDirMode: /^[0-7]{3,4}$/.test(basics.statedir ?? '') ? basics.statedir : null,
    ...(request.runtime ? { runtime: parseRuntimeFacts(sections.get('runtime') ?? '') } : {}),
    ...(request.keepalived ? { keepalived: parseKeepalivedFacts(sections.get('keepalived') ?? '') } : {}),
    ...(stateProblem ? { stateProblem } : {}),
  };
}
