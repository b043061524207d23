import { sortedUniqueAddresses } from './address';
import { familyOf } from './nft/pools';
import { BALANCER_TABLE } from './nft/balancer';
import type { PairSpec } from './pair-fields';
import type { BalancerSpec } from './spec';

/** keepalived on a balancer pair's members: its configuration, track script, unit and files. */
export const KEEPALIVED_CONFIG_FILE = '/etc/tula-dsr/keepalived.conf';
/** keepalived's track script: a member whose data plane is broken gives up the VIPs. */
export const KEEPALIVED_CHECK_SCRIPT = '/usr/local/lib/tula-dsr/dataplane-check.sh';
export const KEEPALIVED_UNIT = 'tula-dsr-keepalived.service';
export const KEEPALIVED_UNIT_FILE = `/etc/systemd/system/${KEEPALIVED_UNIT}`;
/** Our own pid files (keepalived refuses to start while its pid file names a live process: not the distro's). */
export const KEEPALIVED_PID_FILES = {
  main: '/run/tula-dsr-keepalived.pid',
  vrrp: '/run/tula-dsr-keepalived-vrrp.pid',
  checkers: '/run/tula-dsr-keepalived-checkers.pid',
} as const;
export const KEEPALIVED_LOG_FILE = '/var/log/tula-dsr-keepalived.log';
/** Seconds a returning primary waits before it preempts (failback): the flow copy's reconnect and full copy. */
export const PREEMPT_DELAY_SEC = 3;
/**
 * keepalived puts at most 20 addresses in an advertisement, all of the instance's family (IPv4: the members talk over
 * IPv4); the others, IPv6 VIPs included, go in virtual_ipaddress_excluded, which keepalived adds and removes with the
 * rest but does not advertise.
 */
export const VRRP_ADVERTISED_ADDRESSES = 20;

/** How keepalived runs in the foreground with tula-dsr's own files (systemd's ExecStart, or the agent's start). */
export function keepalivedArgv(): string[] {
  const { main, vrrp, checkers } = KEEPALIVED_PID_FILES;
  return ['keepalived', '-n', '-l', '-D', '-f', KEEPALIVED_CONFIG_FILE, '-p', main, '-r', vrrp, '-c', checkers];
}

export const vrrpInstanceName = (pair: PairSpec) => `tula_dsr_${pair.name.replace(/-/g, '_')}`;

/** The VIP addresses keepalived holds on the active member, sorted. */
export function pairAddresses(spec: BalancerSpec): string[] {
  return sortedUniqueAddresses(spec.vips.map((v) => v.ip));
}

export function renderKeepalivedConfig(spec: BalancerSpec): string {
  const pair = spec.pair!;
  const all = pairAddresses(spec);
  const advertised = all.filter((ip) => familyOf(ip) === 4).slice(0, VRRP_ADVERTISED_ADDRESSES);
  const excluded = all.filter((ip) => !advertised.includes(ip));
  // An IPv6 VIP is added deprecated, as on a single balancer, so that the kernel never picks it as the source of the
  // member's own traffic (probes, neighbour discovery) to its backends, which hold the VIP too.
  const line = (ip: string) => (familyOf(ip) === 6 ? `${ip}/128 dev ${spec.interface} preferred_lft 0` : `${ip}/32 dev ${spec.interface}`);
  const block = (name: string, lines: readonly string[]) => (lines.length ? [`  ${name} {`, ...lines.map((l) => `    ${l}`), '  }'] : []);
  return [
    `# Managed by tula-dsr: VRRP for balancer pair ${pair.name} (${pair.path}), member ${spec.name} (${pair.role}). Do not edit.`,
    '# VRRPv3 (sub-second advertisements) has no authentication: the peers are unicast, and a member whose data plane',
    '# is broken gives up the VIPs (track script).',
    'global_defs {',
    `  router_id tula_dsr_${spec.name.replace(/-/g, '_')}`,
    '  vrrp_version 3',
    '  script_user root',
    '  enable_script_security',
    '}',
    '',
    'vrrp_script tula_dsr_dataplane {',
    `  script "${KEEPALIVED_CHECK_SCRIPT}"`,
    // keepalived's shortest script interval is 1 s
    '  interval 1',
    '  timeout 1',
    '  fall 1',
    '  rise 1',
    '}',
    '',
    `vrrp_instance ${vrrpInstanceName(pair)} {`,
    // both start as BACKUP: the priorities (and preemption) decide who becomes MASTER
    '  state BACKUP',
    `  interface ${spec.interface}`,
    `  virtual_router_id ${pair.virtualRouterId}`,
    `  priority ${pair.priority}`,
    `  advert_int ${pair.advertIntervalSec}`,
    // A returning primary waits before it takes the VIPs back, so that the flows the secondary opened meanwhile reach
    // it first: the secondary's runtime notices the lost session within 2 s, reconnects and sends a full copy.
    ...(pair.preempt ? [`  preempt_delay ${PREEMPT_DELAY_SEC}`] : ['  nopreempt']),
    `  unicast_src_ip ${spec.address}`,
    ...block('unicast_peer', [pair.peerAddress]),
    ...block('virtual_ipaddress', advertised.map(line)),
    ...block('virtual_ipaddress_excluded', excluded.map(line)),
    ...block('track_script', ['tula_dsr_dataplane']),
    '}',
    '',
  ].join('\n');
}

/**
 * The track script: the data plane works only with the table's ingress chain and the interface up. Listing one chain
 * does not list the flow maps' elements (100,000 of them take seconds).
 */
export function renderDataplaneCheck(spec: BalancerSpec): string {
  return [
    '#!/bin/sh',
    `# Managed by tula-dsr: keepalived's check of balancer ${spec.name}'s data plane; failing gives up the VIPs.`,
    `nft list chain netdev ${BALANCER_TABLE} ingress >/dev/null 2>&1 || exit 1`,
    `[ "$(cat /sys/class/net/${spec.interface}/operstate 2>/dev/null)" = up ] || exit 1`,
    'exit 0',
    '',
  ].join('\n');
}

export function renderKeepalivedUnit(spec: BalancerSpec): string {
  const pair = spec.pair!;
  const argv = keepalivedArgv();
  return [
    '[Unit]',
    `Description=tula-dsr VRRP (keepalived) for balancer pair ${pair.name}, member ${spec.name}`,
    'After=network-online.target tula-dsr-balancer.service',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStartPre=/usr/sbin/keepalived -t -f ${KEEPALIVED_CONFIG_FILE}`,
    `ExecStart=/usr/sbin/${argv.join(' ')}`,
    // keepalived reloads on SIGHUP without dropping the VIPs of an instance that stays MASTER
    `ExecReload=/usr/sbin/keepalived -t -f ${KEEPALIVED_CONFIG_FILE}`,
    'ExecReload=/bin/kill -HUP $MAINPID',
    'Restart=on-failure',
    'RestartSec=1',
    `PIDFile=${KEEPALIVED_PID_FILES.main}`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}
