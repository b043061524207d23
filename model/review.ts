import {
  planBackendHost,
  describeTunnel,
  renderBackendBootScript,
  addressRestoreLines,
  BACKEND_BOOT_SCRIPT,
  BACKEND_UNIT_FILE,
  HostAddress,
  hostPrefix,
} from './backend-host';
import { planBalancerHost } from './balancer-host';
import { BALANCER_TABLE, BalancerFacts } from './nft/balancer';
import { NftElement, NftTable } from './nft/objects';
import { Pool, groupPools, poolClassid, poolName } from './nft/pools';
import { renderNftDeclarative } from './nft/render';
import type { BackendHostSpec, BalancerSpec, VipSpec } from './spec';
import { vipKey } from './vip-key';
import { pushAll } from './arrays';
import { fnv1a32 } from './scheduling';
import { sha256Hex } from './digest';

/**
 * The human-readable parts of each host's desired state, one multi-line string per concern. They go into the
 * Terraform resource's triggers, so that `terraform plan` in a pull request shows a line diff of exactly the
 * rules and files that change.
 */
export type ReviewText = Record<string, string>;

/** Trigger keys of the per-VIP and per-pool sections of a balancer's ruleset. */
export const VIP_SECTION_PREFIX = 'vip:';
export const POOL_SECTION_PREFIX = 'pool:';
/** Trigger keys of a large balancer's VIP sections, grouped (see vipSectionKey). */
export const VIP_GROUP_PREFIX = 'vips:';

/**
 * The most VIPs whose sections each have a trigger key of their own. Terraform's time for a plan follows the number
 * of keys in a map as much as its bytes: 10,000 per-VIP keys cost a one-weight change 3 of its 4.8 s, 1,024 groups of
 * the same text 1.5 s (docs/decisions.md, "A large balancer's VIP sections are grouped").
 */
export const VIP_SECTIONS_KEYED_MAX = 1000;
/** How many groups a larger balancer's VIP sections fall into, by a hash of the VIP's name: adding a VIP changes one group. */
export const VIP_GROUPS = 1024;

/** The trigger key of a VIP's section: its own (`vip:<name>`) or, for a balancer of more than VIP_SECTIONS_KEYED_MAX VIPs, its group's. */
export function vipSectionKey(name: string, vipCount: number): string {
  if (vipCount <= VIP_SECTIONS_KEYED_MAX) return `${VIP_SECTION_PREFIX}${name}`;
  return `${VIP_GROUP_PREFIX}${(fnv1a32(name) % VIP_GROUPS).toString(16).padStart(3, '0')}`;
}

/** The table whose elements a balancer's review lists. */
const REVIEW_TABLE = `netdev ${BALANCER_TABLE}`;

/**
 * The sections of a group, by VIP name, each as it would stand under its own `vip:<name>` key: a group lists each
 * element as one `MAP ELEMENT` line (see renderElementLines), which this turns back into the `add element`
 * statements. A group written in statements (by an earlier version, still in a plan's prior state) stays as it is.
 */
export function splitVipGroup(text: string): Map<string, string> {
  const sections = new Map<string, string>();
  // each section opens with its comment line, `# VIP <name> (<path>): …` (vipComment)
  for (const section of text.split(/(?=^# VIP )/m)) {
    const name = /^# VIP (\S+)/.exec(section)?.[1];
    if (name !== undefined) sections.set(name, elementStatements(section));
  }
  return sections;
}

/** One `MAP ELEMENT` line of a group: the map is an nft name, the element the rest of the line. */
const ELEMENT_LINE = /^([a-z][a-z0-9_]*) (\S.*)$/;

/** A section of `MAP ELEMENT` lines as `add element` statements, byte for byte what renderStatements gives. */
function elementStatements(section: string): string {
  const [comment, ...lines] = section.replace(/\n$/, '').split('\n');
  const groups: ElementGroups = [];
  for (const line of lines) {
    const match = ELEMENT_LINE.exec(line);
    if (!match || match[1] === 'add') return section;
    const last = groups[groups.length - 1];
    if (last?.name === match[1]) last.elements.push(match[2]);
    else groups.push({ name: match[1], elements: [match[2]] });
  }
  return renderStatements(comment.slice(2), groups);
}

/** A section's elements, map by map: each map's name and its elements' texts. */
type ElementGroups = { name: string; elements: string[] }[];

/** Elements grouped by their owner, map by map, in the table's order: one pass over the table. */
export function elementsByOwner(table: NftTable, ownerOf: (e: NftElement) => string | undefined): Map<string, ElementGroups> {
  const byOwner = new Map<string, ElementGroups>();
  for (const map of table.maps) {
    for (const element of map.elements) {
      const owner = ownerOf(element);
      if (owner === undefined) continue;
      const groups = byOwner.get(owner) ?? [];
      if (!byOwner.has(owner)) byOwner.set(owner, groups);
      const last = groups[groups.length - 1];
      if (last?.name === map.name) last.elements.push(element.text);
      else groups.push({ name: map.name, elements: [element.text] });
    }
  }
  return byOwner;
}

/** A section as `add element` statements, one per map, each element on a line of its own. */
function renderStatements(comment: string, groups: ElementGroups): string {
  const lines = [`# ${comment}`];
  for (const { name, elements } of groups) {
    lines.push(`add element ${REVIEW_TABLE} ${name} {`);
    pushAll(
      lines,
      elements.map((e, i) => `\t${e}${i < elements.length - 1 ? ',' : ''}`),
    );
    lines.push('}');
  }
  return lines.join('\n') + '\n';
}

/** How a large balancer's review says what its `vips:` lines are: the last line of its `ruleset`. */
const GROUPED_ELEMENTS_NOTE = `# In the "${VIP_GROUP_PREFIX}" sections, each VIP's elements are lines MAP ELEMENT: add element ${REVIEW_TABLE} MAP { ELEMENT }\n`;

/**
 * A section of a VIP group: each element as one `MAP ELEMENT` line. The statements' words (`add element netdev
 * tula_dsr`, braces, tabs) were a third of a 10,000-VIP balancer's review, and Terraform's time for any change to
 * the stack follows the bytes of the state (docs/decisions.md, "A large host's review is written compactly").
 */
function renderElementLines(comment: string, groups: ElementGroups): string {
  const lines = [`# ${comment}`];
  for (const { name, elements } of groups) for (const e of elements) lines.push(`${name} ${e}`);
  return lines.join('\n') + '\n';
}

const vipComment = (vip: VipSpec) => `VIP ${vip.name} (${vip.path}): ${vipKey(vip)}, ${vip.mode}, ${vip.algorithm}, flow timeout ${vip.flowTimeoutSec}s`;

/** The most VIPs a pool's comment names: each VIP's own section names its pool, so a large pool's comment stays one short line. */
const POOL_COMMENT_VIPS = 5;

function poolComment(pool: Pool): string {
  const { vips } = pool;
  const users =
    vips.length <= POOL_COMMENT_VIPS
      ? vips.join(', ')
      : `${vips.length.toLocaleString('en')} VIPs (${vips.slice(0, POOL_COMMENT_VIPS - 1).join(', ')}, … ${vips[vips.length - 1]})`;
  return `pool ${poolClassid(pool.id)} of ${users}: ${pool.algorithm} over ${pool.backends.map((b) => `${b.name} ${b.ip} ×${b.weight}`).join(', ')}`;
}

/**
 * A pool's section is named after its id, which a weight change keeps (see groupPools): the change shows as a diff
 * of that section, and a VIP that joins or leaves the pool changes its own section and this one's comment only.
 */
export const poolSectionKey = (pool: Pool) => `${POOL_SECTION_PREFIX}${poolName(pool.id)}`;

/**
 * A balancer's ruleset for review, split so that a plan shows only what changed: `ruleset` holds the table (chains,
 * rules, map declarations, shared elements), each `vip:<name>` entry holds that VIP's map elements (a large
 * balancer's are grouped, see vipSectionKey) and each `pool:<pool id>` entry its slot pool's elements (slots, live
 * backends, dispatch) as `add element` statements.
 * Terraform hides unchanged map entries, so a weight change shows one pool's slot lines, not the whole table.
 */
export function renderBalancerReview(spec: BalancerSpec, facts: BalancerFacts = {}): ReviewText {
  const plan = planBalancerHost(spec, facts);
  const vips = [...spec.vips].sort((a, b) => (a.name < b.name ? -1 : 1));
  const byVip = elementsByOwner(plan.table, (e) => e.vip);
  const byPool = elementsByOwner(plan.table, (e) => e.pool);
  const skeleton: NftTable = {
    ...plan.table,
    maps: plan.table.maps.map((m) => ({ ...m, elements: m.elements.filter((e) => e.vip === undefined && e.pool === undefined) })),
  };
  const sections: ReviewText = {};
  const grouped = vips.length > VIP_SECTIONS_KEYED_MAX;
  for (const vip of vips) {
    const key = vipSectionKey(vip.name, vips.length);
    const groups = byVip.get(vip.name) ?? [];
    const text = grouped ? renderElementLines(vipComment(vip), groups) : renderStatements(vipComment(vip), groups);
    sections[key] = (sections[key] ?? '') + text;
  }
  for (const pool of groupPools(spec.vips)) sections[poolSectionKey(pool)] = renderStatements(poolComment(pool), byPool.get(poolName(pool.id)) ?? []);
  return {
    ruleset: renderNftDeclarative(skeleton) + (grouped ? GROUPED_ELEMENTS_NOTE : ''),
    ...sections,
    addresses: reviewAddressLines(plan.addresses).join('\n') + '\n',
    tunnels: plan.tunnels.length ? plan.tunnels.map((t) => describeTunnel(t.name, t.local, t.remote)).join('\n') + '\n' : '(none)\n',
  };
}

/**
 * The most addresses a host's review lists in full. Past it, `addresses` gives each as `ADDRESS DEVICE` (a VIP
 * address is always a /32 or /128), and a backend's `boot_unit` shows its address lines as one line, with their
 * count and hash: each is `addr replace` of a line of `addresses`, in its order, so the review still shows the file
 * change and `addresses` shows which address it is. At 10,000 VIPs × 4 backends the boot script lines were 1.5 of
 * the state's 6 MB, and the addresses' `/32 dev` another 0.4 MB; Terraform reads and writes the state whole for any
 * change to the stack (docs/decisions.md, "Boot scripts restore addresses in one batch" and "A large host's review
 * is written compactly").
 */
export const REVIEW_ADDRESSES_IN_FULL_MAX = 1000;

/** The line before a large host's `ADDRESS DEVICE` lines in its `addresses`. */
const COMPACT_ADDRESSES_NOTE = '# ADDRESS DEVICE: each address is a /32 (IPv4) or /128 (IPv6) on that device';

/** An address as a small host's review lists it. */
const fullAddressLine = (ip: string, dev: string) => `${ip}/${hostPrefix(ip)} dev ${dev}`;

/** The `addresses` lines of a host's review. */
function reviewAddressLines(addresses: readonly HostAddress[]): string[] {
  if (addresses.length <= REVIEW_ADDRESSES_IN_FULL_MAX) return addresses.map((a) => fullAddressLine(a.ip, a.dev));
  return [COMPACT_ADDRESSES_NOTE, ...addresses.map((a) => `${a.ip} ${a.dev}`)];
}

/** A review's `ruleset` as a balancer of few VIPs has it: without the note on how to read the `vips:` groups. */
export const rulesetWithoutGroupNote = (ruleset: string): string =>
  ruleset.endsWith(GROUPED_ELEMENTS_NOTE) ? ruleset.slice(0, -GROUPED_ELEMENTS_NOTE.length) : ruleset;

/**
 * A review's `addresses` as a host with few addresses has it: the `ADDRESS DEVICE` lines after the note back to
 * `ADDRESS/PREFIX dev DEVICE`, so that `tula-dsr review` shows one form whatever the size (and a host that crosses
 * the limit shows only the addresses that changed).
 */
export function fullAddressLines(text: string): string {
  const lines = text.split('\n');
  const at = lines.indexOf(COMPACT_ADDRESSES_NOTE);
  if (at < 0) return text;
  const full = lines.slice(at + 1).map((line) => {
    const match = /^(\S+) (\S+)$/.exec(line);
    return match ? fullAddressLine(match[1], match[2]) : line;
  });
  return [...lines.slice(0, at), ...full].join('\n');
}

/** The review's stand-in for a long list of boot script address lines. */
function elidedAddressLines(addresses: readonly HostAddress[]): string[] {
  const lines = addressRestoreLines(addresses);
  if (lines.length <= REVIEW_ADDRESSES_IN_FULL_MAX) return lines;
  const digest = sha256Hex(lines.join('\n') + '\n');
  return [
    `\t# ${lines.length} lines not shown: 'addr replace ADDRESS/32 dev DEVICE' \\ (/128 for IPv6) for each line ADDRESS DEVICE under "addresses", in its order (sha256 ${digest})`,
  ];
}

export function renderBackendHostReview(spec: BackendHostSpec): ReviewText {
  const plan = planBackendHost(spec);
  const fileText = (path: string) =>
    path === BACKEND_BOOT_SCRIPT && plan.addresses.length > REVIEW_ADDRESSES_IN_FULL_MAX
      ? renderBackendBootScript(spec, plan, elidedAddressLines)
      : plan.files.find((f) => f.path === path)?.content;
  const sysctls = plan.sysctls.map((s) => `${s.key} = ${s.value}`).join('\n') + '\n';
  return {
    sysctl_file: plan.files[0]?.content ?? `(persist = false: runtime only)\n${sysctls}`,
    addresses:
      [...[plan.tunnel, plan.tunnel6].flatMap((t) => (t ? [describeTunnel(t.name, t.local, 'any')] : [])), ...reviewAddressLines(plan.addresses)].join('\n') +
      '\n',
    mss_clamp: plan.mssClamp?.ruleset ?? '(none: no L3 VIPs)\n',
    boot_unit: plan.unit
      ? `# ${BACKEND_UNIT_FILE}\n${fileText(BACKEND_UNIT_FILE)}\n# ${BACKEND_BOOT_SCRIPT}\n${fileText(BACKEND_BOOT_SCRIPT)}`
      : '(persist = false: nothing survives a reboot)\n',
  };
}
