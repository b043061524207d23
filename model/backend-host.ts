import type { BackendHostSpec, ServiceSpec } from './spec';
import { compareAddresses } from './address';
import { renderCommand } from './shell';

/**
 * Everything one backend host needs, computed from its spec. Ordering matters and is encoded here once: ARP
 * sysctls before any VIP appears on lo (otherwise the host answers ARP for the VIP and steals traffic), the
 * tunnel before its per-device sysctl and its address, and the MSS clamp last.
 */
export const BACKEND_SYSCTL_FILE = '/etc/sysctl.d/99-tula-dsr.conf';
export const BACKEND_BOOT_SCRIPT = '/etc/tula-dsr/backend-up.sh';
export const BACKEND_UNIT = 'tula-dsr-backend.service';
export const BACKEND_UNIT_FILE = `/etc/systemd/system/${BACKEND_UNIT}`;
export const BACKEND_MSS_FILE = '/etc/tula-dsr/backend-mss.nft';
export const MODULES_LOAD_FILE = '/etc/modules-load.d/tula-dsr.conf';
export const MSS_TABLE = 'tula_dsr_mss';
export const BACKEND_TUNNEL = 'ipip0';

export interface Sysctl {
  readonly key: string;
  readonly value: string;
  /** Per-device keys can only be set once the device exists, so they are set by the boot script, not sysctl.d. */
  readonly device?: string;
}

export interface HostAddress {
  readonly ip: string;
  readonly prefix: 32;
  readonly dev: string;
}

export interface HostFile {
  readonly path: string;
  readonly content: string;
  readonly mode: string;
  /** A program, not a text to review (the runtime's bundle): facts bring its hash only, reports show no diff. */
  readonly opaque?: boolean;
}

export interface BackendHostPlan {
  readonly sysctls: readonly Sysctl[];
  readonly tunnel: { readonly name: string; readonly local: string } | null;
  readonly addresses: readonly HostAddress[];
  readonly mssClamp: { readonly file: string; readonly ruleset: string } | null;
  readonly modules: readonly string[];
  /** Files to write, in order; empty when persist is false. */
  readonly files: readonly HostFile[];
  readonly unit: string | null;
}

const unique = (values: string[]) => [...new Set(values)].sort(compareAddresses);

export function backendSysctls(services: readonly ServiceSpec[]): Sysctl[] {
  const sysctls: Sysctl[] = [
    { key: 'net.ipv4.conf.all.arp_ignore', value: '1' },
    { key: 'net.ipv4.conf.all.arp_announce', value: '2' },
  ];
  if (services.some((s) => s.mode === 'l3')) {
    // Decapsulated packets arrive on ipip0 with the client's source address; the kernel applies
    // max(all, ipip0), so strict (1) on either drops them. Loose (2) passes because ipip0 carries the VIP.
    sysctls.push({ key: 'net.ipv4.conf.all.rp_filter', value: '2' });
    sysctls.push({ key: `net.ipv4.conf.${BACKEND_TUNNEL}.rp_filter`, value: '2', device: BACKEND_TUNNEL });
  }
  return sysctls;
}

export function renderSysctlFile(spec: BackendHostSpec, sysctls: readonly Sysctl[]): string {
  const lines = [
    `# Managed by tula-dsr for DSR backend host ${spec.name} (${spec.path}). Changes here are overwritten.`,
    '# arp_ignore=1: answer ARP only for addresses on the receiving interface, so VIPs on lo stay silent.',
    '# arp_announce=2: never use a VIP as the source of ARP requests.',
  ];
  if (sysctls.some((s) => s.key.endsWith('rp_filter'))) {
    lines.push('# rp_filter=2 (loose): IPIP-decapsulated requests arrive on ipip0 with the client as source.');
  }
  for (const s of sysctls) {
    lines.push(s.device ? `# ${s.key} = ${s.value} is set by ${BACKEND_BOOT_SCRIPT} once ${s.device} exists` : `${s.key} = ${s.value}`);
  }
  return lines.join('\n') + '\n';
}

export function renderMssClampRuleset(spec: BackendHostSpec, clamps: ReadonlyMap<number, string[]>): string {
  const lines = [
    `# Managed by tula-dsr for ${spec.name}: clamp the MSS this host advertises for L3 VIPs. The request path`,
    '# through the IPIP tunnel loses 20 bytes and ICMP "fragmentation needed" may never reach the client.',
    `table ip ${MSS_TABLE}`,
    `delete table ip ${MSS_TABLE}`,
    `table ip ${MSS_TABLE} {`,
    '\tchain output {',
    '\t\ttype filter hook output priority mangle; policy accept;',
  ];
  for (const [mss, vips] of [...clamps.entries()].sort(([a], [b]) => a - b)) {
    lines.push(`\t\tip saddr { ${vips.join(', ')} } tcp flags & (syn|ack) == syn|ack tcp option maxseg size > ${mss} tcp option maxseg size set ${mss}`);
  }
  lines.push('\t}', '}');
  return lines.join('\n') + '\n';
}

export function renderBackendBootScript(spec: BackendHostSpec, plan: Omit<BackendHostPlan, 'files' | 'unit'>): string {
  const lines = [
    '#!/bin/sh',
    `# Managed by tula-dsr: restores DSR backend state for ${spec.name} at boot (run by ${BACKEND_UNIT}).`,
    '# Idempotent: safe to run again at any time.',
    'set -eu',
    renderCommand(['sysctl', '-q', '-p', BACKEND_SYSCTL_FILE]),
  ];
  for (const module of plan.modules) lines.push(renderCommand(['modprobe', module]));
  if (plan.tunnel) lines.push(...tunnelUpCommands(plan.tunnel.name, plan.tunnel.local, 'any'));
  for (const s of plan.sysctls) if (s.device) lines.push(renderCommand(['sysctl', '-q', '-w', `${s.key}=${s.value}`]));
  for (const a of plan.addresses) lines.push(renderCommand(['ip', 'addr', 'replace', `${a.ip}/${a.prefix}`, 'dev', a.dev]));
  if (plan.mssClamp) lines.push(renderCommand(['nft', '-f', plan.mssClamp.file]));
  return lines.join('\n') + '\n';
}

/** Boot script lines that create an IPIP tunnel unless it exists, and bring it up. */
export function tunnelUpCommands(name: string, local: string, remote: string): string[] {
  return [
    `${renderCommand(['ip', 'link', 'show', name])} >/dev/null 2>&1 || ${renderCommand(['ip', 'link', 'add', name, 'type', 'ipip', 'local', local, 'remote', remote])}`,
    renderCommand(['ip', 'link', 'set', name, 'up']),
  ];
}

export function renderBootUnit(description: string, script: string): string {
  return [
    '[Unit]',
    `Description=${description}`,
    'DefaultDependencies=no',
    'After=systemd-sysctl.service systemd-modules-load.service local-fs.target',
    'Wants=network-pre.target',
    'Before=network-pre.target shutdown.target',
    'Conflicts=shutdown.target',
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    'Environment=PATH=/usr/sbin:/usr/bin:/sbin:/bin',
    `ExecStart=/bin/sh ${script}`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

export function planBackendHost(spec: BackendHostSpec): BackendHostPlan {
  const l3 = spec.services.filter((s) => s.mode === 'l3');
  const sysctls = backendSysctls(spec.services);
  const tunnel = l3.length ? { name: BACKEND_TUNNEL, local: spec.address! } : null;
  const addresses: HostAddress[] = [
    ...unique(spec.services.map((s) => s.ip)).map((ip) => ({ ip, prefix: 32 as const, dev: 'lo' })),
    ...unique(l3.map((s) => s.ip)).map((ip) => ({ ip, prefix: 32 as const, dev: BACKEND_TUNNEL })),
  ];
  const clamps = new Map<number, string[]>();
  for (const s of l3) {
    const mss = s.mssClamp ?? 1440;
    const list = clamps.get(mss) ?? [];
    if (!list.includes(s.ip)) list.push(s.ip);
    clamps.set(mss, list.sort(compareAddresses));
  }
  const mssClamp = l3.length ? { file: BACKEND_MSS_FILE, ruleset: renderMssClampRuleset(spec, clamps) } : null;
  const modules = l3.length ? ['ipip'] : [];
  const base = { sysctls, tunnel, addresses, mssClamp, modules };
  if (!spec.persist) return { ...base, files: [], unit: null };
  const files: HostFile[] = [{ path: BACKEND_SYSCTL_FILE, content: renderSysctlFile(spec, sysctls), mode: '0644' }];
  if (modules.length)
    files.push({ path: MODULES_LOAD_FILE, content: `# Managed by tula-dsr: IPIP decapsulation for L3 DSR\n${modules.join('\n')}\n`, mode: '0644' });
  if (mssClamp) files.push({ path: BACKEND_MSS_FILE, content: mssClamp.ruleset, mode: '0644' });
  files.push({ path: BACKEND_BOOT_SCRIPT, content: renderBackendBootScript(spec, base), mode: '0755' });
  const unit = renderBootUnit(`tula-dsr DSR backend ${spec.name}: ARP sysctls, VIPs on lo${tunnel ? ', ipip0 and MSS clamp' : ''}`, BACKEND_BOOT_SCRIPT);
  files.push({ path: BACKEND_UNIT_FILE, content: unit, mode: '0644' });
  return { ...base, files, unit: BACKEND_UNIT };
}
