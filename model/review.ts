import { planBackendHost, BACKEND_BOOT_SCRIPT, BACKEND_UNIT_FILE } from './backend-host';
import { planBalancerHost } from './balancer-host';
import { BalancerFacts } from './nft/balancer';
import { NftMap, NftTable } from './nft/objects';
import { renderNftDeclarative } from './nft/render';
import type { BackendHostSpec, BalancerSpec, VipSpec } from './spec';
import { vipKey } from './vip-key';
import { pushAll } from './arrays';

/**
 * The human-readable parts of each host's desired state, one multi-line string per concern. They go into the
 * Terraform resource's triggers, so that `terraform plan` in a pull request shows a line diff of exactly the
 * rules and files that change.
 */
export type ReviewText = Record<string, string>;

/** Trigger keys of the per-VIP sections of a balancer's ruleset. */
export const VIP_SECTION_PREFIX = 'vip:';

/** Each VIP's elements, map by map, in the table's order: one pass over the table, whatever the number of VIPs. */
export function elementsByVip(table: NftTable): Map<string, { map: NftMap; elements: string[] }[]> {
  const byVip = new Map<string, { map: NftMap; elements: string[] }[]>();
  for (const map of table.maps) {
    for (const element of map.elements) {
      if (element.vip === undefined) continue;
      const groups = byVip.get(element.vip) ?? [];
      if (!byVip.has(element.vip)) byVip.set(element.vip, groups);
      const last = groups[groups.length - 1];
      if (last?.map === map) last.elements.push(element.text);
      else groups.push({ map, elements: [element.text] });
    }
  }
  return byVip;
}

function renderVipSection(table: NftTable, vip: VipSpec, groups: readonly { map: NftMap; elements: string[] }[]): string {
  const id = `${table.family} ${table.name}`;
  const lines = [`# VIP ${vip.name} (${vip.path}): ${vipKey(vip)}, ${vip.mode}, ${vip.algorithm}, flow timeout ${vip.flowTimeoutSec}s`];
  for (const { map, elements } of groups) {
    lines.push(`add element ${id} ${map.name} {`);
    pushAll(
      lines,
      elements.map((e, i) => `\t${e}${i < elements.length - 1 ? ',' : ''}`),
    );
    lines.push('}');
  }
  return lines.join('\n') + '\n';
}

/**
 * A balancer's ruleset for review, split so that a plan shows only what changed: `ruleset` holds the table (chains,
 * rules, map declarations, shared elements) and each `vip:<name>` entry holds that VIP's map elements as `add element`
 * statements. Terraform hides unchanged map entries, so a weight change shows one VIP's slot lines, not the whole
 * table.
 */
export function renderBalancerReview(spec: BalancerSpec, facts: BalancerFacts = {}): ReviewText {
  const plan = planBalancerHost(spec, facts);
  const vips = [...spec.vips].sort((a, b) => (a.name < b.name ? -1 : 1));
  const byVip = elementsByVip(plan.table);
  const skeleton: NftTable = { ...plan.table, maps: plan.table.maps.map((m) => ({ ...m, elements: m.elements.filter((e) => e.vip === undefined) })) };
  const sections = Object.fromEntries(vips.map((vip) => [`${VIP_SECTION_PREFIX}${vip.name}`, renderVipSection(plan.table, vip, byVip.get(vip.name) ?? [])]));
  return {
    ruleset: renderNftDeclarative(skeleton),
    ...sections,
    addresses: plan.addresses.map((a) => `${a.ip}/${a.prefix} dev ${a.dev}`).join('\n') + '\n',
    tunnels: plan.tunnels.length ? plan.tunnels.map((t) => `${t.name}: ipip local ${t.local} remote ${t.remote}`).join('\n') + '\n' : '(none)\n',
  };
}

export function renderBackendHostReview(spec: BackendHostSpec): ReviewText {
  const plan = planBackendHost(spec);
  const fileText = (path: string) => plan.files.find((f) => f.path === path)?.content;
  const sysctls = plan.sysctls.map((s) => `${s.key} = ${s.value}`).join('\n') + '\n';
  return {
    sysctl_file: plan.files[0]?.content ?? `(persist = false: runtime only)\n${sysctls}`,
    addresses:
      [
        ...(plan.tunnel ? [`${plan.tunnel.name}: ipip local ${plan.tunnel.local} remote any`] : []),
        ...plan.addresses.map((a) => `${a.ip}/${a.prefix} dev ${a.dev}`),
      ].join('\n') + '\n',
    mss_clamp: plan.mssClamp?.ruleset ?? '(none: no L3 VIPs)\n',
    boot_unit: plan.unit
      ? `# ${BACKEND_UNIT_FILE}\n${fileText(BACKEND_UNIT_FILE)}\n# ${BACKEND_BOOT_SCRIPT}\n${fileText(BACKEND_BOOT_SCRIPT)}`
      : '(persist = false: nothing survives a reboot)\n',
  };
}
