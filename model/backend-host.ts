import { DEFAULTS, type BackendHostSpec, type ServiceSpec } from './spec';
import { mayBeIpv6, parseIpAddress, sortedUniqueAddresses } from './address';
import { renderCommand, shellQuote } from './shell';

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
/** The backend's IPv6-in-IPv6 decapsulating device (`ip6tnl0` is the module's own fallback device in every namespace). */
export const BACKEND_TUNNEL6 = 'dsr6tnl0';
/** IPIP tunnels carry IPv4 (module ipip), ip6tnl tunnels IPv6 in IPv6 (module ip6_tunnel). */
export const TUNNEL_MODULES = { 4: 'ipip', 6: 'ip6_tunnel' } as const;

export interface Sysctl {
  readonly key: string;
  readonly value: string;
  /** Per-device keys can only be set once the device exists, so they are set by the boot script, not sysctl.d. */
  readonly device?: string;
}

export interface HostAddress {
  readonly ip: string;
  /** 32 for an IPv4 address, 128 for an IPv6 one: a VIP is one address, not a subnet. */
  readonly prefix: 32 | 128;
  readonly dev: string;
  /**
   * IPv6 only: skip duplicate address detection. A VIP the balancer adds with DAD stays tentative (unanswered) for
   * about a second (measured: reachable after 1.2 s, against 38 ms with nodad); no one else may answer for it anyway.
   */
  readonly nodad?: boolean;
  /**
   * IPv6 only: added deprecated (`preferred_lft 0`), so that the kernel never picks it as the source of the host's own
   * packets. Measured: a /128 VIP on the balancer's interface matches every address of the interface's /64 better than
   * the host's own /64 address (Linux caps the match at each address's prefix length), so connections from the
   * balancer to its backends left from the VIP, and a backend, which has the VIP on lo, answered itself.
   */
  readonly deprecated?: boolean;
}

export const isIpv6 = (ip: string): boolean => mayBeIpv6(ip) && parseIpAddress(ip)?.family === 6;
export const hostPrefix = (ip: string): 32 | 128 => (isIpv6(ip) ? 128 : 32);

/** What `ip` needs of an address: a HostAddress, or one a host's state file records (which has no flags). */
export type IpAddressLine = Pick<HostAddress, 'ip' | 'dev' | 'nodad' | 'deprecated'> & { readonly prefix: number };

/** `ip addr replace|add|del` arguments for a host address, flags included. */
export function addressArgs(a: IpAddressLine): string[] {
  return [`${a.ip}/${a.prefix}`, 'dev', a.dev, ...addressFlags(a)];
}

/** A value on an `ip -batch` line: one word, without what ip's own line parser reads (quotes, `#`, backslashes). */
const BATCH_WORD = /^[^\s"'#\\]+$/;

/**
 * One `ip -batch` line for a host address: `addr replace 10.0.0.1/32 dev lo`. `del` takes no flags; `add` and
 * `replace` keep them, so that an address put back is put back as it was (nodad, deprecated).
 */
export function addressBatchLine(op: 'add' | 'replace' | 'del', a: IpAddressLine): string {
  // validation already refuses such values; this keeps one that slipped through from becoming another word or
  // another command of the batch (the address and the device are the line's only free words)
  for (const value of [a.ip, a.dev])
    if (!BATCH_WORD.test(value)) throw new Error(`cannot put ${JSON.stringify(value)} on an ip -batch line: it must be one word without quotes, '#' or '\\'`);
  const flags = op !== 'del' && (a.nodad || a.deprecated) ? ` ${addressFlags(a).join(' ')}` : '';
  return `addr ${op} ${a.ip}/${a.prefix} dev ${a.dev}${flags}`;
}

/**
 * Boot script lines that put addresses back with one `ip -batch` process, which reads one quoted `printf` argument
 * per address. Measured in a namespace: 10,000 addresses on lo took 16.4–22.1 s as one `ip` process each, 2.1 s in
 * one batch. Each address keeps a line of its own (continued with a backslash), so adding one to the host changes
 * one line of the file, which travels as a one-line patch. `ip -batch` stops at the first line that fails and exits
 * non-zero, so `set -e` stops the script there, as it did at a failing `ip` before.
 */
export function addressRestoreCommands(addresses: readonly HostAddress[], body = addressRestoreLines): string[] {
  if (!addresses.length) return [];
  return ["printf '%s\\n' \\", ...body(addresses), '\t| ip -batch -'];
}

/** The quoted argument lines of addressRestoreCommands, one per address. */
export const addressRestoreLines = (addresses: readonly HostAddress[]): string[] => addresses.map((a) => `\t${shellQuote(addressBatchLine('replace', a))} \\`);

/** The `ip addr add` flags of a host address: `nodad`, `preferred_lft 0`. */
export function addressFlags(a: Pick<HostAddress, 'nodad' | 'deprecated'>): string[] {
  return [...(a.nodad ? ['nodad'] : []), ...(a.deprecated ? ['preferred_lft', '0'] : [])];
}

export interface HostFile {
  readonly path: string;
  readonly content: string;
  readonly mode: string;
  /** A program, not a text to review (the runtime's bundle): facts bring its hash only, reports show no diff. */
  readonly opaque?: boolean;
}

export interface MssTable {
  readonly family: 'ip' | 'ip6';
  readonly name: string;
  readonly ruleset: string;
}

export interface BackendHostPlan {
  readonly sysctls: readonly Sysctl[];
  readonly tunnel: { readonly name: string; readonly local: string } | null;
  /** The IPv6-in-IPv6 device for L3 IPv6 VIPs. */
  readonly tunnel6: { readonly name: string; readonly local: string } | null;
  readonly addresses: readonly HostAddress[];
  /** The file (one `nft -f` file: the `ip` table, then the `ip6` one) and each table it holds. */
  readonly mssClamp: { readonly file: string; readonly ruleset: string; readonly tables: readonly MssTable[] } | null;
  readonly modules: readonly string[];
  /** Files to write, in order; empty when persist is false. */
  readonly files: readonly HostFile[];
  readonly unit: string | null;
}

export function backendSysctls(services: readonly ServiceSpec[]): Sysctl[] {
  const v4 = services.filter((s) => !isIpv6(s.ip));
  // IPv6 needs no ARP settings: measured, a backend never answers a Neighbour Solicitation for an address on lo
  // (the kernel answers only for addresses on the receiving interface) and adding one to lo sends nothing
  const sysctls: Sysctl[] =
    v4.length || !services.length
      ? [
          { key: 'net.ipv4.conf.all.arp_ignore', value: '1' },
          { key: 'net.ipv4.conf.all.arp_announce', value: '2' },
        ]
      : [];
  if (v4.some((s) => s.mode === 'l3')) {
    // Decapsulated packets arrive on ipip0 with the client's source address; the kernel applies
    // max(all, ipip0), so strict (1) on either drops them. Loose (2) passes because ipip0 carries the VIP.
    sysctls.push({ key: 'net.ipv4.conf.all.rp_filter', value: '2' });
    sysctls.push({ key: `net.ipv4.conf.${BACKEND_TUNNEL}.rp_filter`, value: '2', device: BACKEND_TUNNEL });
  }
  if (services.some((s) => s.mode === 'l3' && isIpv6(s.ip))) {
    // a device created while default.disable_ipv6 is 1 drops every IPv6 packet it receives, decapsulated ones too
    sysctls.push({ key: `net.ipv6.conf.${BACKEND_TUNNEL6}.disable_ipv6`, value: '0', device: BACKEND_TUNNEL6 });
    // The device decapsulates from any sender (remote any): with the default accept_ra=1, a router advertisement
    // anyone tunnels to this host installs a default route through it (measured in the VM lab; 0 keeps it out).
    sysctls.push({ key: `net.ipv6.conf.${BACKEND_TUNNEL6}.accept_ra`, value: '0', device: BACKEND_TUNNEL6 });
  }
  return sysctls;
}

export function renderSysctlFile(spec: BackendHostSpec, sysctls: readonly Sysctl[]): string {
  const lines = [`# Managed by tula-dsr for DSR backend host ${spec.name} (${spec.path}). Changes here are overwritten.`];
  if (sysctls.some((s) => s.key.endsWith('arp_ignore'))) {
    lines.push(
      '# arp_ignore=1: answer ARP only for addresses on the receiving interface, so VIPs on lo stay silent.',
      '# arp_announce=2: never use a VIP as the source of ARP requests.',
    );
  }
  if (sysctls.some((s) => s.key.endsWith('rp_filter'))) {
    lines.push('# rp_filter=2 (loose): IPIP-decapsulated requests arrive on ipip0 with the client as source.');
  }
  if (sysctls.some((s) => s.key.endsWith('disable_ipv6'))) {
    lines.push(`# disable_ipv6=0 on ${BACKEND_TUNNEL6}: ip6tnl-decapsulated requests are IPv6 packets received there.`);
    lines.push(`# accept_ra=0 on ${BACKEND_TUNNEL6}: it decapsulates from any sender, so router advertisements through it are refused.`);
  }
  if (!sysctls.some((s) => !s.device)) lines.push('# IPv6 VIPs need no sysctl: a backend never answers Neighbour Solicitations for an address on lo.');
  for (const s of sysctls) {
    lines.push(s.device ? `# ${s.key} = ${s.value} is set by ${BACKEND_BOOT_SCRIPT} once ${s.device} exists` : `${s.key} = ${s.value}`);
  }
  return lines.join('\n') + '\n';
}

/** Per MSS, the L3 VIPs whose SYN-ACKs this host clamps to it (one family). */
export type MssClamps = ReadonlyMap<number, string[]>;

export function renderMssClampRuleset(spec: BackendHostSpec, clamps: MssClamps): string {
  const lines = [
    `# Managed by tula-dsr for ${spec.name}: clamp the MSS this host advertises for L3 VIPs. The request path`,
    '# through the IPIP tunnel loses 20 bytes and ICMP "fragmentation needed" may never reach the client.',
    ...mssTableLines('ip', clamps),
  ];
  return lines.join('\n') + '\n';
}

/** The IPv6 clamp: the same rule in an `ip6` table; ip6tnl costs 40 bytes and the inner IPv6 header 40 more. */
export function renderMssClampRuleset6(spec: BackendHostSpec, clamps: MssClamps): string {
  const lines = [
    `# Managed by tula-dsr for ${spec.name}: clamp the MSS this host advertises for L3 IPv6 VIPs. The request path`,
    '# through the ip6tnl tunnel loses 40 bytes and ICMPv6 "packet too big" may never reach the client.',
    ...mssTableLines('ip6', clamps),
  ];
  return lines.join('\n') + '\n';
}

function mssTableLines(family: 'ip' | 'ip6', clamps: MssClamps): string[] {
  const lines = [
    `table ${family} ${MSS_TABLE}`,
    `delete table ${family} ${MSS_TABLE}`,
    `table ${family} ${MSS_TABLE} {`,
    '\tchain output {',
    '\t\ttype filter hook output priority mangle; policy accept;',
  ];
  for (const [mss, vips] of [...clamps.entries()].sort(([a], [b]) => a - b)) {
    lines.push(`\t\t${family} saddr { ${vips.join(', ')} } tcp flags & (syn|ack) == syn|ack tcp option maxseg size > ${mss} tcp option maxseg size set ${mss}`);
  }
  lines.push('\t}', '}');
  return lines;
}

/** `addressLines` renders the address arguments: the review shortens a long list (see renderBackendHostReview). */
export function renderBackendBootScript(spec: BackendHostSpec, plan: Omit<BackendHostPlan, 'files' | 'unit'>, addressLines = addressRestoreLines): string {
  const lines = [
    '#!/bin/sh',
    `# Managed by tula-dsr: restores DSR backend state for ${spec.name} at boot (run by ${BACKEND_UNIT}).`,
    '# Idempotent: safe to run again at any time.',
    'set -eu',
    renderCommand(['sysctl', '-q', '-p', BACKEND_SYSCTL_FILE]),
  ];
  for (const module of plan.modules) lines.push(renderCommand(['modprobe', module]));
  for (const tunnel of [plan.tunnel, plan.tunnel6]) if (tunnel) lines.push(...tunnelUpCommands(tunnel.name, tunnel.local, 'any'));
  for (const s of plan.sysctls) if (s.device) lines.push(renderCommand(['sysctl', '-q', '-w', `${s.key}=${s.value}`]));
  lines.push(...addressRestoreCommands(plan.addresses, addressLines));
  if (plan.mssClamp) lines.push(renderCommand(['nft', '-f', plan.mssClamp.file]));
  return lines.join('\n') + '\n';
}

/** The kind of tunnel whose local end is this address: IPIP for IPv4, IPv6 in IPv6 (ip6tnl) for IPv6. */
export const tunnelKind = (local: string): 'ipip' | 'ip6tnl' => (isIpv6(local) ? 'ip6tnl' : 'ipip');

/** A tunnel as the plan shows it: `tula0a000102: ipip local 10.0.0.1 remote 10.0.1.2`. */
export const describeTunnel = (name: string, local: string, remote: string): string => `${name}: ${tunnelKind(local)} local ${local} remote ${remote}`;

/**
 * `ip link add` for a tunnel: IPIP when its local end is IPv4, IPv6-in-IPv6 (ip6tnl) when it is IPv6. The ip6tnl
 * tunnel sends no encapsulation limit option, which would cost 8 bytes more on the request path than the 40 the
 * MSS clamp allows for.
 */
export function tunnelAddArgs(name: string, local: string, remote: string): string[] {
  return isIpv6(local)
    ? ['ip', 'link', 'add', name, 'type', 'ip6tnl', 'local', local, 'remote', remote, 'mode', 'ip6ip6', 'encaplimit', 'none']
    : ['ip', 'link', 'add', name, 'type', 'ipip', 'local', local, 'remote', remote];
}

/** Boot script lines that create a tunnel unless it exists, and bring it up. */
export function tunnelUpCommands(name: string, local: string, remote: string): string[] {
  return [
    `${renderCommand(['ip', 'link', 'show', name])} >/dev/null 2>&1 || ${renderCommand(tunnelAddArgs(name, local, remote))}`,
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

function mssClamps(services: readonly ServiceSpec[], fallback: number): MssClamps {
  // each MSS's addresses once, in address order: sorted once at the end (no longer after every service)
  const ips = new Map<number, Set<string>>();
  for (const s of services) {
    const mss = s.mssClamp ?? fallback;
    const set = ips.get(mss) ?? new Set<string>();
    set.add(s.ip);
    ips.set(mss, set);
  }
  return new Map([...ips].map(([mss, set]) => [mss, sortedUniqueAddresses(set)]));
}

export function planBackendHost(spec: BackendHostSpec): BackendHostPlan {
  const l3 = spec.services.filter((s) => s.mode === 'l3' && !isIpv6(s.ip));
  const l3v6 = spec.services.filter((s) => s.mode === 'l3' && isIpv6(s.ip));
  const sysctls = backendSysctls(spec.services);
  const tunnel = l3.length ? { name: BACKEND_TUNNEL, local: spec.address! } : null;
  const tunnel6 = l3v6.length ? { name: BACKEND_TUNNEL6, local: spec.ipv6Address! } : null;
  // an IPv6 VIP needs no address on the ip6tnl device: without rp_filter, lo is enough (measured in the VM lab)
  const addresses: HostAddress[] = [
    ...sortedUniqueAddresses(spec.services.map((s) => s.ip)).map((ip) => ({ ip, prefix: hostPrefix(ip), dev: 'lo' })),
    ...sortedUniqueAddresses(l3.map((s) => s.ip)).map((ip) => ({ ip, prefix: 32 as const, dev: BACKEND_TUNNEL })),
  ];
  const tables: MssTable[] = [];
  if (l3.length) tables.push({ family: 'ip', name: MSS_TABLE, ruleset: renderMssClampRuleset(spec, mssClamps(l3, DEFAULTS.mssClamp)) });
  if (l3v6.length) tables.push({ family: 'ip6', name: MSS_TABLE, ruleset: renderMssClampRuleset6(spec, mssClamps(l3v6, DEFAULTS.mssClamp6)) });
  const mssClamp = tables.length ? { file: BACKEND_MSS_FILE, ruleset: tables.map((t) => t.ruleset).join(''), tables } : null;
  const modules = [...(l3.length ? [TUNNEL_MODULES[4]] : []), ...(l3v6.length ? [TUNNEL_MODULES[6]] : [])];
  const base = { sysctls, tunnel, tunnel6, addresses, mssClamp, modules };
  if (!spec.persist) return { ...base, files: [], unit: null };
  const files: HostFile[] = [{ path: BACKEND_SYSCTL_FILE, content: renderSysctlFile(spec, sysctls), mode: '0644' }];
  if (modules.length) {
    const what = l3v6.length ? (l3.length ? 'IPIP and ip6tnl' : 'ip6tnl') : 'IPIP';
    files.push({ path: MODULES_LOAD_FILE, content: `# Managed by tula-dsr: ${what} decapsulation for L3 DSR\n${modules.join('\n')}\n`, mode: '0644' });
  }
  if (mssClamp) files.push({ path: BACKEND_MSS_FILE, content: mssClamp.ruleset, mode: '0644' });
  files.push({ path: BACKEND_BOOT_SCRIPT, content: renderBackendBootScript(spec, base), mode: '0755' });
  const devices = [tunnel && 'ipip0', tunnel6 && BACKEND_TUNNEL6].filter(Boolean).join(', ');
  const arp = sysctls.some((s) => s.key.endsWith('arp_ignore')) ? 'ARP sysctls, ' : '';
  const unit = renderBootUnit(`tula-dsr DSR backend ${spec.name}: ${arp}VIPs on lo${devices ? `, ${devices} and MSS clamp` : ''}`, BACKEND_BOOT_SCRIPT);
  files.push({ path: BACKEND_UNIT_FILE, content: unit, mode: '0644' });
  return { ...base, files, unit: BACKEND_UNIT };
}
