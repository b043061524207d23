import { TUNNEL_MODULES, addressRestoreCommands, hostPrefix, isIpv6, renderBootUnit, tunnelUpCommands, HostAddress, HostFile } from './backend-host';
import { pushAll } from './arrays';
import { renderCommand } from './shell';
import { sortedUniqueAddresses } from './address';
import { BalancerFacts, BalancerTableDraft, balancerTunnels, draftBalancerTable, withBalancerFacts } from './nft/balancer';
import { renderNftDeclarative } from './nft/render';
import { NftTable } from './nft/objects';
import type { BalancerSpec } from './spec';
import { KEEPALIVED_CHECK_SCRIPT, KEEPALIVED_CONFIG_FILE, renderDataplaneCheck, renderKeepalivedConfig } from './pair';

export const BALANCER_RULESET_FILE = '/etc/tula-dsr/balancer.nft';
export const BALANCER_BOOT_SCRIPT = '/etc/tula-dsr/balancer-up.sh';
export const BALANCER_UNIT = 'tula-dsr-balancer.service';
export const BALANCER_UNIT_FILE = `/etc/systemd/system/${BALANCER_UNIT}`;

export interface Tunnel {
  readonly name: string;
  readonly local: string;
  readonly remote: string;
}

export interface BalancerHostPlan {
  readonly table: NftTable;
  readonly tunnels: readonly Tunnel[];
  /** The balancer owns each VIP on its interface, so that it answers ARP (IPv4) or Neighbour Solicitations (IPv6) for it. */
  readonly addresses: readonly HostAddress[];
  readonly modules: readonly string[];
  readonly files: readonly HostFile[];
  readonly unit: string;
}

export function balancerHeader(spec: BalancerSpec): string[] {
  return [`Managed by tula-dsr: DSR balancer ${spec.name} (${spec.path}) on ${spec.interface}. Do not edit.`];
}

/** A pair member owns no VIP address itself: keepalived adds them on the active member only. */
export function balancerAddresses(spec: BalancerSpec): HostAddress[] {
  if (spec.pair) return [];
  const vips = sortedUniqueAddresses(spec.vips.map((v) => v.ip));
  return vips.map((ip) =>
    isIpv6(ip) ? { ip, prefix: hostPrefix(ip), dev: spec.interface, nodad: true, deprecated: true } : { ip, prefix: 32, dev: spec.interface },
  );
}

/** The boot file starts with create-then-delete so that loading it again replaces the table in one transaction. */
export function renderBalancerBootRuleset(table: NftTable): string {
  const declarative = renderNftDeclarative(table);
  const idempotent = `table ${table.family} ${table.name}\ndelete table ${table.family} ${table.name}\n`;
  const at = declarative.indexOf(`table ${table.family} ${table.name} {`);
  return declarative.slice(0, at) + idempotent + declarative.slice(at);
}

export function renderBalancerBootScript(
  spec: BalancerSpec,
  tunnels: readonly Tunnel[],
  addresses: readonly HostAddress[],
  modules: readonly string[],
): string {
  const lines = ['#!/bin/sh', `# Managed by tula-dsr: restores DSR balancer ${spec.name} at boot (run by ${BALANCER_UNIT}). Idempotent.`, 'set -eu'];
  for (const m of modules) lines.push(renderCommand(['modprobe', m]));
  for (const t of tunnels) pushAll(lines, tunnelUpCommands(t.name, t.local, t.remote));
  lines.push(...addressRestoreCommands(addresses));
  lines.push(renderCommand(['nft', '-f', BALANCER_RULESET_FILE]));
  return lines.join('\n') + '\n';
}

/**
 * What a balancer's plan holds that needs no facts from the host: all of it but the MACs. The agent makes it while
 * the host runs the facts script (see planBalancerHost).
 */
export interface PreparedBalancerHost extends Pick<BalancerHostPlan, 'tunnels' | 'addresses' | 'modules'> {
  readonly draft: BalancerTableDraft;
  /** The files but the ruleset's, which names the MACs. */
  readonly otherFiles: readonly HostFile[];
}

export function prepareBalancerHost(spec: BalancerSpec): PreparedBalancerHost {
  const draft = draftBalancerTable(spec, balancerHeader(spec));
  // the table's text but its defines: the rest of the boot ruleset, shared with the table the facts complete
  renderNftDeclarative(draft.table);
  const tunnels = balancerTunnels(spec);
  const addresses = balancerAddresses(spec);
  const modules = ([4, 6] as const).filter((family) => tunnels.some((t) => isIpv6(t.remote) === (family === 6))).map((family) => TUNNEL_MODULES[family]);
  const otherFiles: HostFile[] = [
    { path: BALANCER_BOOT_SCRIPT, content: renderBalancerBootScript(spec, tunnels, addresses, modules), mode: '0755' },
    {
      path: BALANCER_UNIT_FILE,
      content: renderBootUnit(`tula-dsr DSR balancer ${spec.name}: VIPs, tunnels and nft table`, BALANCER_BOOT_SCRIPT),
      mode: '0644',
    },
    ...(spec.pair
      ? [
          { path: KEEPALIVED_CHECK_SCRIPT, content: renderDataplaneCheck(spec), mode: '0755' },
          { path: KEEPALIVED_CONFIG_FILE, content: renderKeepalivedConfig(spec), mode: '0644' },
        ]
      : []),
  ];
  return { draft, tunnels, addresses, modules, otherFiles };
}

/** `prepared`: prepareBalancerHost of the same spec, made earlier; it is the same plan either way. */
export function planBalancerHost(spec: BalancerSpec, facts: BalancerFacts = {}, prepared = prepareBalancerHost(spec)): BalancerHostPlan {
  const table = withBalancerFacts(prepared.draft, spec, facts);
  const { tunnels, addresses, modules, otherFiles } = prepared;
  const files = [{ path: BALANCER_RULESET_FILE, content: renderBalancerBootRuleset(table), mode: '0644' }, ...otherFiles];
  return { table, tunnels, addresses, modules, files, unit: BALANCER_UNIT };
}
