/**
 * The namespace lab's network (the picture is in topology.ts): its namespaces, one bridge in the switch namespace,
 * a veth from each host's `eth0` onto it, and the controller veth from the root namespace.
 */
import { shOk } from './exec';
import { listNetns, addNetns } from './netns';
import { hostOctets } from './lab-props';
import type { LabNames } from './lifecycle';
import type { Subnet } from './subnet';
import type { LabHostSpec } from './topology';

/** The lab's addresses in its subnet: the controller is .254, each host has its octet. */
export interface LabAddresses {
  readonly subnet: Subnet;
  readonly controller: string;
  /** By position in `LabProps.hosts`. */
  readonly hosts: readonly string[];
  /** Each host's IPv6 address, by the same position. */
  readonly hosts6: readonly string[];
}

export function labAddresses(subnet: Subnet, hosts: readonly LabHostSpec[]): LabAddresses {
  const octets = hostOctets(hosts);
  return { subnet, controller: subnet.address(254), hosts: octets.map((o) => subnet.address(o)), hosts6: octets.map((o) => subnet.ipv6Address(o)) };
}

/**
 * Creates the lab's namespaces. A namespace of that name that exists already belongs to someone else: refuse
 * before creating any, so that teardown never deletes a namespace this lab did not create.
 */
export async function createNamespaces(names: LabNames): Promise<void> {
  const existing = await listNetns();
  const clash = names.netnsNames.filter((n) => existing.includes(n));
  if (clash.length > 0) throw new Error(`network namespaces exist already, not created by this lab: ${clash.join(', ')}`);
  for (const n of names.netnsNames) await addNetns(n);
}

/** Builds the bridge, plugs every host and the controller into it, and gives each its address. */
export async function wireNetwork(names: LabNames, hosts: readonly LabHostSpec[], addresses: LabAddresses): Promise<void> {
  const { switchNetns, rootIf, hostNetns } = names;
  const prefix = addresses.subnet.prefixLength;
  await shOk(
    [
      `ip -n ${switchNetns} link set lo up`,
      `ip -n ${switchNetns} link add br0 type bridge`,
      // bridge netfilter is built in and on: frames crossing the bridge must not meet the machine's iptables
      `ip netns exec ${switchNetns} sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables /proc/sys/net/bridge/bridge-nf-call-arptables; do [ ! -e $f ] || echo 0 > $f; done'`,
      `ip -n ${switchNetns} link set br0 up`,
      ...hosts.flatMap((h, i) => [
        `ip -n ${hostNetns(h.name)} link add eth0 type veth peer name p-${h.name} netns ${switchNetns}`,
        `ip -n ${switchNetns} link set p-${h.name} master br0 up`,
        `ip -n ${hostNetns(h.name)} link set lo up`,
        `ip -n ${hostNetns(h.name)} addr add ${addresses.hosts[i]}/${prefix} dev eth0`,
        // the kernel flushes IPv6 addresses when a link goes down; a host's network configuration would add its
        // static address again, the lab has none: keep it, so a test that takes an interface down finds it after
        `ip netns exec ${hostNetns(h.name)} sysctl -qw net.ipv6.conf.eth0.keep_addr_on_down=1`,
        // nodad: the address answers at once (duplicate address detection would hold it tentative for a second)
        `ip -n ${hostNetns(h.name)} addr add ${addresses.hosts6[i]}/64 dev eth0 nodad`,
        `ip -n ${hostNetns(h.name)} link set eth0 up`,
      ]),
      `ip link add ${rootIf} type veth peer name ctl netns ${switchNetns}`,
      // the root namespace must send nothing onto the lab bridge by itself (router solicitations, DAD)
      `[ ! -e /proc/sys/net/ipv6/conf/${rootIf}/disable_ipv6 ] || echo 1 > /proc/sys/net/ipv6/conf/${rootIf}/disable_ipv6`,
      `ip -n ${switchNetns} link set ctl master br0 up`,
      `ip addr add ${addresses.controller}/${prefix} dev ${rootIf}`,
      `ip link set ${rootIf} up`,
    ].join('\n'),
  );
}
