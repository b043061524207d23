/**
 * What runs inside the VM: the routed topology and the init script (PID 1, POSIX sh under dash) that builds it.
 *
 *   client 10.10.1.2 ──┐                      ┌── lb  10.10.2.2  (VIPs routed here; tula-dsr tunnels to be1/be2)
 *                      ├── router (root ns) ──┼── be1 10.10.3.2
 *                      │   10.10.{1..5}.1     ├── be2 10.10.4.2
 *                      │                      └── be3 10.10.5.2  (the IPv6 stack's third backend)
 *
 * Every data link is dual stack: host N has 10.10.N.2/24 and fd10:10:N::2/64, the router .1 and ::1 (no DAD: the
 * lab's addresses are its own, and a tentative address would drop the first packets). The IPv6 VIPs
 * (fd10:10:100::/64) are routed to the balancer as the IPv4 ones are.
 *
 * Every host is a network namespace with its own /etc, /var, /run, /root and /tmp (bind mounts in its own mount
 * namespace, which its sshd and everything it starts inherit) and its own sshd on a management veth `mgmt0`. The
 * management veths and the VM's virtio NIC share the bridge `br0` in the root namespace, so qemu's user-mode
 * network forwards 127.0.0.1:<port> on the host to <mgmt ip>:22 of each host. The router is the VM's root
 * namespace; it forwards with loose rp_filter (strict would drop the backends' replies, whose source is the VIP).
 */
import { shellQuote } from '../../model/shell';
import { renderSshdConfig } from '../sshd';

export const VM_HOST_NAMES = ['router', 'client', 'lb', 'be1', 'be2', 'be3'] as const;
export type VmHostName = (typeof VM_HOST_NAMES)[number];

export interface VmHostDef {
  readonly name: VmHostName;
  /** Address on the management bridge (qemu's user-mode network 10.0.2.0/24); sshd listens here. */
  readonly mgmtIp: string;
  /** Data-plane address, its /24 towards the router, and the router's side of it. */
  readonly address: string;
  readonly gateway?: string;
  /** The same link's IPv6 address (/64), and the router's side of it. */
  readonly address6: string;
  readonly gateway6?: string;
}

export const VM_MGMT_PREFIX = 24;
export const VM_DATA_PREFIX = 24;
export const VM_DATA_PREFIX6 = 64;

const dataHost = (name: VmHostName, n: number, mgmt: number): VmHostDef => ({
  name,
  mgmtIp: `10.0.2.${mgmt}`,
  address: `10.10.${n}.2`,
  gateway: `10.10.${n}.1`,
  address6: `fd10:10:${n}::2`,
  gateway6: `fd10:10:${n}::1`,
});

export const VM_HOSTS: readonly VmHostDef[] = [
  { name: 'router', mgmtIp: '10.0.2.15', address: '10.10.1.1', address6: 'fd10:10:1::1' },
  dataHost('client', 1, 21),
  dataHost('lb', 2, 22),
  dataHost('be1', 3, 23),
  dataHost('be2', 4, 24),
  dataHost('be3', 5, 25),
];

/** The VIPs live in their own prefix, which the router routes to the balancer. */
export const VM_VIP_PREFIX = '10.10.100.0/24';
export const VM_VIPS = { web: '10.10.100.1', dns: '10.10.100.2', any: '10.10.100.3' } as const;
export const VM_VIP_PREFIX6 = 'fd10:10:100::/64';
export const VM_VIPS6 = { web: 'fd10:10:100::1', dns: 'fd10:10:100::2' } as const;
export const VM_HTTP_PORT = 80;
export const VM_UDP_PORT = 5353;
export const VM_BALANCER_INTERFACE = 'eth0';
/** Size of the HTTP download each backend serves at /big. */
export const VM_BIG_BYTES = 1 << 20;

export const SERIAL_MARKER = 'TULA-VM:';

export interface InitOptions {
  /** Seconds after which the VM powers itself off, whatever happens on the host side. */
  readonly lifetimeSec: number;
}

const hostDef = (n: VmHostName) => VM_HOSTS.find((h) => h.name === n)!;

/** The sshd_config of a VM host: the L2 lab's config, listening on the host's management address. */
export function vmSshdConfig(h: VmHostDef): string {
  return renderSshdConfig({ hostname: h.name, listenAddress: h.mgmtIp, port: 22 }).replace('LogLevel INFO', 'LogLevel ERROR');
}

/** The lab tables that observe traffic. They exist before tula-dsr runs, so they also prove it leaves other tables alone. */
export function routerRuleset(): string {
  const backendIfs = VM_HOSTS.filter((h) => h.name.startsWith('be'))
    .map((h) => `"r-${h.name}"`)
    .join(', ');
  return [
    'table inet lab_router {',
    '\tcounter vip_from_backends {',
    '\t}',
    '\tcounter vip_from_lb {',
    '\t}',
    '\tcounter fragneeded_dropped {',
    '\t}',
    '\tcounter vip6_from_backends {',
    '\t}',
    '\tcounter vip6_from_lb {',
    '\t}',
    '\tcounter toobig_dropped {',
    '\t}',
    '\tchain forward {',
    '\t\ttype filter hook forward priority filter; policy accept;',
    `\t\tip saddr ${VM_VIP_PREFIX} iifname { ${backendIfs} } counter name "vip_from_backends"`,
    `\t\tip saddr ${VM_VIP_PREFIX} iifname "r-lb" counter name "vip_from_lb"`,
    `\t\tip6 saddr ${VM_VIP_PREFIX6} iifname { ${backendIfs} } counter name "vip6_from_backends"`,
    // the balancer's "packet too big" about a request leaves from the VIP it owns: not a reply that crossed it
    `\t\tip6 saddr ${VM_VIP_PREFIX6} iifname "r-lb" meta l4proto != ipv6-icmp counter name "vip6_from_lb"`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

/** On the balancer: everything with a VIP as source that enters or leaves its data interface (DSR: none may). */
export function balancerWatchRuleset(): string {
  return [
    'table netdev lab_watch {',
    '\tcounter vip_src_in {',
    '\t}',
    '\tcounter vip_src_out {',
    '\t}',
    '\tcounter vip_dst_in {',
    '\t}',
    '\tcounter vip6_src_in {',
    '\t}',
    '\tcounter vip6_src_out {',
    '\t}',
    '\tcounter vip6_dst_in {',
    '\t}',
    '\tcounter vip6_icmp_out {',
    '\t}',
    '\tchain in {',
    `\t\ttype filter hook ingress device "${VM_BALANCER_INTERFACE}" priority -500; policy accept;`,
    `\t\tip saddr ${VM_VIP_PREFIX} counter name "vip_src_in"`,
    `\t\tip daddr ${VM_VIP_PREFIX} counter name "vip_dst_in"`,
    `\t\tip6 saddr ${VM_VIP_PREFIX6} counter name "vip6_src_in"`,
    `\t\tip6 daddr ${VM_VIP_PREFIX6} counter name "vip6_dst_in"`,
    '\t}',
    '\tchain out {',
    `\t\ttype filter hook egress device "${VM_BALANCER_INTERFACE}" priority -500; policy accept;`,
    `\t\tip saddr ${VM_VIP_PREFIX} counter name "vip_src_out"`,
    // ICMPv6 errors about requests the balancer cannot forward (packet too big) leave from the VIP, a local address
    `\t\tip6 saddr ${VM_VIP_PREFIX6} meta l4proto ipv6-icmp counter name "vip6_icmp_out"`,
    `\t\tip6 saddr ${VM_VIP_PREFIX6} meta l4proto != ipv6-icmp counter name "vip6_src_out"`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

/** The CGI that accepts an upload and names the backend: `<name> received <bytes> bytes <sha256>`. */
function postCgi(name: string): string {
  return [
    '#!/bin/sh',
    `# ${name}: read exactly CONTENT_LENGTH bytes, reply with their count and hash`,
    'f=$(mktemp)',
    'head -c "${CONTENT_LENGTH:-0}" > "$f"',
    'n=$(wc -c < "$f")',
    'h=$(sha256sum < "$f" | cut -c1-64)',
    'rm -f "$f"',
    "printf 'Content-Type: text/plain\\r\\n\\r\\n'",
    `echo "${name} received $n bytes $h"`,
    '',
  ].join('\n');
}

/**
 * PID 1. Sets everything up in a subshell with `set -e`; on success prints `TULA-VM: READY`, on any failure prints
 * the setup log and `TULA-VM: FAILED`, then powers off. It also powers off after `lifetimeSec` in any case.
 */
export function renderInit(o: InitOptions): string {
  const q = shellQuote;
  const hosts = VM_HOSTS.filter((h) => h.name !== 'router');
  const backends = VM_HOSTS.filter((h) => h.name.startsWith('be'));
  const all = VM_HOSTS.map((h) => h.name).join(' ');
  const lb = hostDef('lb');
  // `ip -batch` runs many commands in one process: each dynamically linked `ip` start costs tens of ms under TCG
  const rootBatch = [
    'link add br0 type bridge',
    'link set eth0 master br0',
    'link set eth0 up',
    'link set br0 up',
    `addr add ${hostDef('router').mgmtIp}/${VM_MGMT_PREFIX} dev br0`,
    ...hosts.flatMap((h) => [
      `link add m-${h.name} type veth peer name mgmt0 netns ${h.name}`,
      `link set m-${h.name} master br0`,
      `link set m-${h.name} up`,
      `link add r-${h.name} type veth peer name eth0 netns ${h.name}`,
      `addr add ${h.gateway}/${VM_DATA_PREFIX} dev r-${h.name}`,
      `addr add ${h.gateway6}/${VM_DATA_PREFIX6} dev r-${h.name} nodad`,
      `link set r-${h.name} up`,
    ]),
    `route add ${VM_VIP_PREFIX} via ${lb.address} dev r-lb`,
    `route add ${VM_VIP_PREFIX6} via ${lb.address6} dev r-lb`,
  ];
  const nsBatch = (h: VmHostDef) => [
    'link set lo up',
    `addr add ${h.mgmtIp}/${VM_MGMT_PREFIX} dev mgmt0`,
    'link set mgmt0 up',
    `addr add ${h.address}/${VM_DATA_PREFIX} dev eth0`,
    `addr add ${h.address6}/${VM_DATA_PREFIX6} dev eth0 nodad`,
    'link set eth0 up',
    `route add default via ${h.gateway} dev eth0`,
    `route add ::/0 via ${h.gateway6} dev eth0`,
  ];
  const lines: string[] = [
    '#!/bin/sh',
    '# tula-dsr VM lab: PID 1 (generated by lab/vm/guest.ts)',
    'export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C HOME=/root',
    `say() { echo "${SERIAL_MARKER} $*"; }`,
    'up() { cut -d" " -f1 /proc/uptime; }',
    'mount -t proc proc /proc',
    'mount -t sysfs sysfs /sys',
    'mount -t devtmpfs devtmpfs /dev',
    'mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts',
    'mount -t tmpfs -o mode=0755 tmpfs /run',
    "# /lab/run: the lab's own logs, outside every host's bound folders, so any host can read them",
    'mkdir -p /run/netns /lab/run',
    'say "BOOT $(up)"',
    `( sleep ${o.lifetimeSec}; say "LIFETIME over (${o.lifetimeSec}s): powering off"; poweroff -f ) &`,
    '',
    '# Runs "$@" inside host $1: its network namespace, its own UTS and mount namespace with its /etc, /var, /run,',
    "# /root and /tmp bound over the shared ones. Everything is exec'd, so $! is the command's own PID.",
    'in_host() {',
    '  n=$1; shift',
    `  exec ip netns exec "$n" unshare -u /bin/sh -c 'h=/hosts/$0; for d in etc var run root tmp; do mount --bind "$h/$d" "/$d" || exit 1; done; hostname "$0"; exec "$@"' "$n" "$@"`,
    '}',
    '',
    'setup() {',
    '  set -e',
    '  m=/lib/modules/$(uname -r)',
    '  while read -r ko; do insmod "$m/$ko"; done < "$m/tula-preload"',
    '  echo "modules loaded $(up)"',
    '  ip link set lo up',
    '  ip netns attach router 1',
    `  for n in ${hosts.map((h) => h.name).join(' ')}; do ip netns add $n; done`,
    `  ip -batch - <<'EOF'`,
    ...rootBatch,
    'EOF',
  ];
  for (const h of hosts) lines.push(`  ip -n ${h.name} -batch - <<'EOF'`, ...nsBatch(h), 'EOF');
  lines.push(
    '  # the router: forwarding, loose rp_filter (strict would drop replies sourced from the VIP)',
    '  sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.default.rp_filter=2 net.ipv6.conf.all.forwarding=1',
    `  printf '%s' ${q(routerRuleset())} > /lab/run/router.nft`,
    '  nft -f /lab/run/router.nft',
    '  echo "topology $(up)"',
    "  # each host's own filesystem view and sshd",
    `  for n in ${all}; do`,
    '    h=/hosts/$n',
    '    mkdir -p $h/var/lib $h/var/log $h/run/sshd $h/root/.ssh $h/tmp',
    '    cp -a /etc $h/etc',
    '    chmod 0700 $h/root $h/root/.ssh',
    '    chmod 1777 $h/tmp',
    '    echo $n > $h/etc/hostname',
    '    cp /lab/hosts/$n/ssh_host_ed25519_key /lab/hosts/$n/ssh_host_ed25519_key.pub /lab/hosts/$n/sshd_config $h/etc/ssh/',
    '    chmod 0600 $h/etc/ssh/ssh_host_ed25519_key',
    '    cp /lab/authorized_keys $h/root/.ssh/authorized_keys',
    '    chmod 0600 $h/root/.ssh/authorized_keys',
    '  done',
    `  for n in ${all}; do`,
    '    ( in_host $n /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config ) >>/lab/run/sshd-$n.log 2>&1 &',
    '    eval "sshd_$n=$!"',
    '  done',
    `  printf '%s' ${q(balancerWatchRuleset())} > /lab/run/lb-watch.nft`,
    '  ip netns exec lb nft -f /lab/run/lb-watch.nft',
    '  # backends: HTTP (name, 1 MiB download, upload CGI) on every address, UDP echo bound to the UDP VIP',
  );
  for (const b of backends) {
    lines.push(
      `  mkdir -p /srv/${b.name}/cgi-bin`,
      `  echo ${b.name} > /srv/${b.name}/name`,
      // random and different per backend: a download's hash tells which backend served it
      `  head -c ${VM_BIG_BYTES} /dev/urandom > /srv/${b.name}/big`,
      `  printf '%s' ${q(postCgi(b.name))} > /srv/${b.name}/cgi-bin/post`,
      `  chmod 0755 /srv/${b.name}/cgi-bin/post`,
      // socat binds the UDP VIP before tula-dsr puts it on lo, so that replies leave from the VIP
      `  ip netns exec ${b.name} sysctl -q -w net.ipv4.ip_nonlocal_bind=1 net.ipv6.ip_nonlocal_bind=1`,
      `  ( in_host ${b.name} httpd -f -p ${VM_HTTP_PORT} -h /srv/${b.name} ) >>/lab/run/httpd-${b.name}.log 2>&1 &`,
      `  ( in_host ${b.name} socat UDP4-RECVFROM:${VM_UDP_PORT},bind=${VM_VIPS.dns},fork SYSTEM:'echo ${b.name}' ) >>/lab/run/udp-${b.name}.log 2>&1 &`,
      `  ( in_host ${b.name} socat UDP6-RECVFROM:${VM_UDP_PORT},bind=[${VM_VIPS6.dns}],fork SYSTEM:'echo ${b.name}' ) >>/lab/run/udp6-${b.name}.log 2>&1 &`,
    );
  }
  lines.push(
    '  echo "servers started $(up)"',
    '  # wait until every sshd listens on port 22 (0016) in its namespace',
    '  i=0',
    '  while :; do',
    '    n_up=0',
    `    for n in ${all}; do`,
    '      eval "p=\\$sshd_$n"',
    '      grep -q "^ *[0-9]*: [0-9A-F]*:0016 00000000:0000 0A" /proc/$p/net/tcp 2>/dev/null && n_up=$((n_up + 1))',
    '    done',
    `    [ $n_up -eq ${VM_HOSTS.length} ] && break`,
    '    i=$((i + 1)); [ $i -lt 600 ] || { echo "sshd did not start"; cat /lab/run/sshd-*.log; return 1; }',
    '    usleep 50000',
    '  done',
    '  echo "sshd listening $(up)"',
    '}',
    '',
    '# not inside `if`: that would switch off set -e in setup',
    '( setup ) > /lab/run/setup.log 2>&1',
    'rc=$?',
    'if [ $rc -eq 0 ]; then',
    '  say "READY $(up)"',
    'else',
    '  cat /lab/run/setup.log',
    '  say "FAILED setup (exit $rc)"',
    '  poweroff -f',
    'fi',
    '# PID 1 stays, reaping orphans, until the host powers the VM off (poweroff -f over ssh) or the lifetime ends',
    'while :; do wait; sleep 1; done',
    '',
  );
  return lines.join('\n');
}
