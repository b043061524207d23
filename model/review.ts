import { planBackendHost, BACKEND_BOOT_SCRIPT, BACKEND_UNIT_FILE } from './backend-host';
import { planBalancerHost } from './balancer-host';
import { BalancerFacts, vipKeyValue } from './nft/balancer';
import { NftMap, NftTable } from './nft/objects';
import { renderNftDeclarative } from './nft/render';
import type { BackendHostSpec, BalancerSpec, VipSpec } from './spec';

/**
 * The human-readable parts of each host's desired state, one multi-line string per concern. They go into the
 * Terraform resource's triggers, so that `terraform plan` in a pull request shows a line diff of exactly the
 * rules and files that change.
 */
export type ReviewText = Record<string, string>;

/** Trigger keys of the per-VIP sections of a balancer's ruleset. */
export const VIP_SECTION_PREFIX = 'vip:';

/** Maps whose elements belong to one VIP each (all keyed by the VIP first). */
const PER_VIP_MAPS = /^(vip|vip_counter|slots_l[23]|live_l[23])_(port|any)$/;

/**
 * Each per-VIP map's elements grouped by the VIP key they start with, built once per table: looking them up per VIP
 * keeps a balancer's review linear in its VIPs (filtering every map for every VIP took 7 s at 1,000 VIPs). An
 * element belongs to a VIP when it starts with `<vip key> `; the key has 5 space-separated words for single-port
 * VIPs (`ip . proto . port`) and 3 for all-port VIPs (`ip . proto`).
 */
const elementIndex = new WeakMap<NftTable, Map<string, { map: NftMap; elements: string[] }[]>>();

function indexOf(table: NftTable): Map<string, { map: NftMap; elements: string[] }[]> {
  let index = elementIndex.get(table);
  if (index) return index;
  index = new Map();
  for (const map of table.maps) {
    const kind = /_(port|any)$/.exec(map.name)?.[1];
    if (!PER_VIP_MAPS.test(map.name) || !kind) continue;
    const words = kind === 'any' ? 3 : 5;
    const byKey = new Map<string, string[]>();
    for (const e of map.elements) {
      const parts = e.split(' ');
      if (parts.length <= words) continue;
      const key = `${kind} ${parts.slice(0, words).join(' ')}`;
      const list = byKey.get(key);
      if (list) list.push(e);
      else byKey.set(key, [e]);
    }
    for (const [key, elements] of byKey) {
      const entries = index.get(key);
      if (entries) entries.push({ map, elements });
      else index.set(key, [{ map, elements }]);
    }
  }
  elementIndex.set(table, index);
  return index;
}

function vipElements(table: NftTable, vip: VipSpec): { map: NftMap; elements: string[] }[] {
  const kind = vip.port === '*' ? 'any' : 'port';
  return indexOf(table).get(`${kind} ${vipKeyValue(vip)}`) ?? [];
}

function renderVipSection(table: NftTable, vip: VipSpec): string {
  const id = `${table.family} ${table.name}`;
  const lines = [`# VIP ${vip.name} (${vip.path}): ${vip.ip} ${vip.protocol}/${vip.port}, ${vip.mode}, ${vip.algorithm}, flow timeout ${vip.flowTimeoutSec}s`];
  for (const { map, elements } of vipElements(table, vip)) {
    lines.push(`add element ${id} ${map.name} {`, ...elements.map((e, i) => `\t${e}${i < elements.length - 1 ? ',' : ''}`), '}');
  }
  return lines.join('\n') + '\n';
}

/**
 * A balancer's ruleset for review, split so that a plan shows only what changed: `ruleset` holds the table (chains,
 * rules, map declarations, shared elements) and each `vip:<name>` entry holds that VIP's map elements as `add element`
 * statements. Terraform hides unchanged map entries, so a weight change shows one VIP's slot lines, not the whole
 * table. `joinBalancerReview` puts the parts back together into one loadable nft file.
 */
export function renderBalancerReview(spec: BalancerSpec, facts: BalancerFacts = {}): ReviewText {
  const plan = planBalancerHost(spec, facts);
  const vips = [...spec.vips].sort((a, b) => (a.name < b.name ? -1 : 1));
  const owned = new Set(vips.flatMap((vip) => vipElements(plan.table, vip).flatMap(({ map, elements }) => elements.map((e) => `${map.name}\u0000${e}`))));
  const skeleton: NftTable = { ...plan.table, maps: plan.table.maps.map((m) => ({ ...m, elements: m.elements.filter((e) => !owned.has(`${m.name}\u0000${e}`)) })) };
  const sections = Object.fromEntries(vips.map((vip) => [`${VIP_SECTION_PREFIX}${vip.name}`, renderVipSection(plan.table, vip)]));
  return {
    ruleset: renderNftDeclarative(skeleton),
    ...sections,
    addresses: plan.addresses.map((a) => `${a.ip}/${a.prefix} dev ${a.dev}`).join('\n') + '\n',
    tunnels: plan.tunnels.length ? plan.tunnels.map((t) => `${t.name}: ipip local ${t.local} remote ${t.remote}`).join('\n') + '\n' : '(none)\n',
  };
}

/** The whole ruleset from its review parts: the table, then every VIP's elements. */
export function joinBalancerReview(review: ReviewText): string {
  const sections = Object.keys(review).filter((k) => k.startsWith(VIP_SECTION_PREFIX)).sort();
  return [review.ruleset, ...sections.map((k) => review[k])].join('');
}

export function renderBackendHostReview(spec: BackendHostSpec): ReviewText {
  const plan = planBackendHost(spec);
  const fileText = (path: string) => plan.files.find((f) => f.path === path)?.content;
  const sysctls = plan.sysctls.map((s) => `${s.key} = ${s.value}`).join('\n') + '\n';
  return {
    sysctl_file: plan.files[0]?.content ?? `(persist = false: runtime only)\n${sysctls}`,
    addresses: [
      ...(plan.tunnel ? [`${plan.tunnel.name}: ipip local ${plan.tunnel.local} remote any`] : []),
      ...plan.addresses.map((a) => `${a.ip}/${a.prefix} dev ${a.dev}`),
    ].join('\n') + '\n',
    mss_clamp: plan.mssClamp?.ruleset ?? '(none: no L3 VIPs)\n',
    boot_unit: plan.unit
      ? `# ${BACKEND_UNIT_FILE}\n${fileText(BACKEND_UNIT_FILE)}\n# ${BACKEND_BOOT_SCRIPT}\n${fileText(BACKEND_BOOT_SCRIPT)}`
      : '(persist = false: nothing survives a reboot)\n',
  };
}

