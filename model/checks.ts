import { SpecIssue, showValue } from './issues';
import { Cidr, broadcastOf, cidrContains, parseCidr, parseIpAddress } from './address';
import type { BackendHostSpec, BalancerSpec, IsUnresolved, SshTargetSpec, VipSpec } from './spec';
import type { HealthCheckSpec } from './health-check';
import { vipKey } from './vip-key';
import { MANAGED_MIN_SLOTS, MAX_SLOTS_PER_VIP, slotCount } from './scheduling';
import { pushAll } from './arrays';
import { BACKEND_TUNNEL6 } from './backend-host';
import { statsIntervalWithoutTextfile } from './stats-textfile';

/**
 * Cross-object checks. They run at synth (with `isUnresolved` = cdktf's token test, so that comparisons involving a
 * value Terraform only knows at apply are skipped) and again in the agent (where every value is known).
 */
export interface CheckOptions {
  readonly isUnresolved?: IsUnresolved;
}

const known = (opts: CheckOptions, ...values: unknown[]) => values.every((v) => v !== undefined && !(opts.isUnresolved?.(v) ?? false));
/** An address known to be IPv6; a token counts as IPv4, the family every address had before IPv6 came. */
const isIpv6 = (opts: CheckOptions, ip: string) => known(opts, ip) && parseIpAddress(ip)?.family === 6;

/** `prefix` is how the fields are named where the target sits: `ssh.` in a host spec, nothing for a bare target. */
export function checkSshTarget(ssh: SshTargetSpec, path: string, prefix = 'ssh.'): SpecIssue[] {
  const count = Number(ssh.hostKey !== undefined) + Number(ssh.knownHostsFile !== undefined);
  if (count === 1) return [];
  return [
    {
      path,
      field: `${prefix}hostKey`,
      message:
        count === 0
          ? `is missing: host keys are always verified, so set exactly one of ${prefix}hostKey ('SHA256:…' from \`ssh-keygen -lf\`, or an OpenSSH public key line) or ${prefix}knownHostsFile`
          : `and ${prefix}knownHostsFile are both set; set exactly one of them`,
    },
  ];
}

/** A probe needs a port: an all-ports ('*') VIP has none to lend its checks (nor its backends' own checks). */
function checkProbePorts(vip: VipSpec): SpecIssue[] {
  if (vip.port !== '*') return [];
  const portless = (check: HealthCheckSpec | undefined) => check !== undefined && check.kind !== 'none' && check.port === undefined;
  const message = (what: string) => `is required on ${what} all-ports ('*') VIP: name the port to probe, such as { kind: 'tcp', port: 80 }`;
  const issues: SpecIssue[] = [];
  if (portless(vip.healthCheck)) issues.push({ path: vip.path, field: 'healthCheck.port', message: message('an') });
  for (const backend of vip.backends) {
    if (portless(backend.healthCheck)) issues.push({ path: backend.path, field: 'healthCheck.port', message: message('a backend of an') });
  }
  return issues;
}

interface SubnetFacts {
  readonly subnet: Cidr | null;
  /** The network and broadcast (all-ones) addresses as text; null for /31 and /32 (/127 and /128), which have neither. */
  readonly edges: { network: string; broadcast: string } | null;
}

const subnetFacts = new Map<string, SubnetFacts>();

/** A balancer's subnet, parsed once: every VIP and backend of a balancer is compared with it, ten thousand times for a large one. */
function parseSubnet(subnetText: string): SubnetFacts {
  let facts = subnetFacts.get(subnetText);
  if (!facts) {
    const subnet = parseCidr(subnetText);
    const broadcast = subnet && subnet.prefix < subnet.address.bytes.length * 8 - 1 ? broadcastOf(subnet)?.text : undefined;
    facts = { subnet, edges: subnet && broadcast ? { network: subnet.address.text, broadcast } : null };
    if (subnetFacts.size > 64) subnetFacts.clear();
    subnetFacts.set(subnetText, facts);
  }
  return facts;
}

/**
 * False when no algorithm can give these backends more than MAX_SLOTS_PER_VIP slots: with integer weights, a table
 * has at most the sum of the positive weights (least connections: fewer than 120 more), so computing the exact count
 * (reducing the weights by their divisor), ten thousand times for a large balancer, is only needed above that.
 */
function mayExceedSlots(backends: readonly { weight: number }[]): boolean {
  let sum = 0;
  for (const { weight } of backends) {
    if (!Number.isInteger(weight)) return true;
    if (weight > 0) sum += weight;
  }
  return sum + MANAGED_MIN_SLOTS > MAX_SLOTS_PER_VIP;
}

/** A single value known (not a token): `known` without its array, for the checks run once per VIP and backend. */
const isKnown = (opts: CheckOptions, value: unknown) => value !== undefined && !(opts.isUnresolved?.(value) ?? false);

/** What every VIP of a balancer is checked against, worked out once per balancer. */
interface BalancerContext {
  readonly balancer: BalancerSpec;
  readonly opts: CheckOptions;
  /** Each family's L2 segment: `subnet` for IPv4 backends, `ipv6Subnet` for IPv6 ones (null: none, or a token). */
  readonly subnet4: SubnetFacts | null;
  readonly subnet6: SubnetFacts | null;
  /** The balancer's own addresses where known. */
  readonly address?: string;
  readonly ipv6Address?: string;
}

function balancerContext(balancer: BalancerSpec, opts: CheckOptions): BalancerContext {
  const facts = (text: string | undefined) => (text && isKnown(opts, text) ? parseSubnet(text) : null);
  return {
    balancer,
    opts,
    subnet4: facts(balancer.subnet),
    subnet6: facts(balancer.ipv6Subnet),
    address: isKnown(opts, balancer.address) ? balancer.address : undefined,
    ipv6Address: isKnown(opts, balancer.ipv6Address) ? balancer.ipv6Address : undefined,
  };
}

const subnetText = (ctx: BalancerContext, family: number | undefined) => (family === 6 ? ctx.balancer.ipv6Subnet : ctx.balancer.subnet);
const subnetFactsOf = (ctx: BalancerContext, family: number | undefined) => (family === 6 ? ctx.subnet6 : ctx.subnet4);

function edgeOfSubnet(ctx: BalancerContext, ip: string): string | null {
  const address = parseIpAddress(ip);
  const edges = address && subnetFactsOf(ctx, address.family)?.edges;
  if (!address || !edges || (address.text !== edges.network && address.text !== edges.broadcast)) return null;
  return `the ${address.text === edges.network ? 'network' : 'broadcast'} address of the balancer's subnet ${subnetText(ctx, address.family)}`;
}

/** Whether a (known) address is one of the balancer's own. */
const ownAddress = (ctx: BalancerContext, ip: string) => isKnown(ctx.opts, ip) && (ip === ctx.address || ip === ctx.ipv6Address);

/** The message quotes the bad value first, as the field checks' messages do: `ip: "10.0.2.5" is outside …`. */
function addIssue(issues: SpecIssue[], path: string, field: string, value: unknown, message: string) {
  issues.push({ path, field, value, message: `${showValue(value)} ${message}` });
}

/** The weights of a VIP's backends are all known. */
function weightsKnown(opts: CheckOptions, backends: readonly { weight: number }[]): boolean {
  for (const b of backends) if (!isKnown(opts, b.weight)) return false;
  return true;
}

/** Appends the problems of one VIP to `issues`. */
function checkVip(vip: VipSpec, ctx: BalancerContext, issues: SpecIssue[]): void {
  const { opts } = ctx;
  const add = (path: string, field: string, value: unknown, message: string) => addIssue(issues, path, field, value, message);
  const vipFamily = isKnown(opts, vip.ip) ? parseIpAddress(vip.ip)?.family : undefined;

  if (vip.backends.length === 0) {
    issues.push({
      path: vip.path,
      field: 'backends',
      value: [],
      message: 'is empty; a VIP needs at least one backend: add one with vip.addBackend(name, { host }) or new Backend(vip, name, { ip })',
    });
  }
  if (vip.algorithm !== 'consistent-hash' && isKnown(opts, vip.algorithm) && weightsKnown(opts, vip.backends) && mayExceedSlots(vip.backends)) {
    const slots = slotCount(vip.algorithm, vip.backends);
    if (slots > MAX_SLOTS_PER_VIP) {
      const why =
        vip.algorithm === 'round-robin'
          ? `${slots} backends take new flows`
          : `the weights need ${slots} slots (their sum divided by their greatest common divisor)`;
      issues.push({
        path: vip.path,
        field: 'backends',
        value: slots,
        message: `${why}; a VIP's table holds at most ${MAX_SLOTS_PER_VIP} slots: use smaller weights or weights with a common divisor, or algorithm 'consistent-hash' (a fixed table of hashTableSize slots)`,
      });
    }
  }
  if (vip.protocol === 'udp' && isKnown(opts, vip.algorithm) && vip.algorithm.includes('least-connections')) {
    add(
      vip.path,
      'algorithm',
      vip.algorithm,
      "is set on a UDP VIP, but least connections counts a connection's end from the client's FIN or RST, which UDP does not have; use 'round-robin', 'weighted-round-robin' or 'consistent-hash'",
    );
  }
  if (vip.mssClamp !== undefined && vip.mode === 'l2') {
    add(
      vip.path,
      'mssClamp',
      vip.mssClamp,
      vipFamily === 6
        ? "is set on an L2 VIP, but mssClamp only applies to L3 (ip6tnl) VIPs, whose request path loses 40 bytes to encapsulation; remove it or use mode 'l3'"
        : "is set on an L2 VIP, but mssClamp only applies to L3 (IPIP) VIPs, whose request path loses 20 bytes to encapsulation; remove it or use mode 'l3'",
    );
  }
  if (vip.hashTableSize !== undefined && vip.algorithm !== 'consistent-hash') {
    add(
      vip.path,
      'hashTableSize',
      vip.hashTableSize,
      `${showValue(vip.hashTableSize)} is set on a '${vip.algorithm}' VIP, but hashTableSize only applies to algorithm 'consistent-hash'; remove it or change the algorithm`,
    );
  }
  if (ownAddress(ctx, vip.ip)) {
    add(vip.path, 'ip', vip.ip, "is the balancer's own address; a VIP needs an address of its own");
  }
  if (isKnown(opts, vip.ip)) {
    const edge = edgeOfSubnet(ctx, vip.ip);
    if (edge) add(vip.path, 'ip', vip.ip, `is ${edge}; use a host address`);
  }
  const names = new Map<string, string>();
  const ips = new Map<string, string>();
  for (const backend of vip.backends) {
    if (names.has(backend.name)) {
      add(backend.path, 'name', backend.name, `is used twice in VIP ${vip.name} (also by ${names.get(backend.name)}); backend names must be unique in a VIP`);
    } else names.set(backend.name, backend.path);
    const ipKnown = isKnown(opts, backend.ip);
    if (ipKnown) {
      if (ips.has(backend.ip)) {
        add(backend.path, 'ip', backend.ip, `is used twice in VIP ${vip.name} (also by ${ips.get(backend.ip)}); each backend needs its own address`);
      } else ips.set(backend.ip, backend.path);
    }
    if (backend.port !== undefined && isKnown(opts, backend.port) && isKnown(opts, vip.port) && backend.port !== vip.port) {
      add(
        backend.path,
        'port',
        backend.port,
        vip.port === '*'
          ? "is set, but the VIP serves all ports ('*'); DSR cannot translate ports, so leave the backend port unset"
          : `differs from the VIP port ${vip.port}; DSR cannot translate ports, so the backend must listen on ${vip.port} (leave port unset)`,
      );
    }
    if (ipKnown && isKnown(opts, vip.ip) && backend.ip === vip.ip) {
      add(backend.path, 'ip', backend.ip, "is the VIP itself; use the backend's real address");
    }
    if (ownAddress(ctx, backend.ip)) {
      add(backend.path, 'ip', backend.ip, "is the balancer's own address; use the backend's real address");
    }
    const backendFamily = ipKnown ? parseIpAddress(backend.ip)?.family : undefined;
    if (vipFamily && backendFamily && backendFamily !== vipFamily) {
      add(
        backend.path,
        'ip',
        backend.ip,
        `is an IPv${backendFamily} address, but VIP ${vip.name} (${vip.ip}) is IPv${vipFamily}; a backend must be reached in its VIP's family: ` +
          `L3 tunnels carry IPv4 in IPv4 (ipip) and IPv6 in IPv6 (ip6tnl), and health probes go to the backend's address with the VIP written in its place, ` +
          `so give the backend its IPv${vipFamily} address (ip, or the BackendHost's ${vipFamily === 6 ? 'ipv6Address' : 'address'})`,
      );
    }
    if (backend.mac !== undefined && vip.mode === 'l3') {
      add(
        backend.path,
        'mac',
        backend.mac,
        `is set on a backend of an L3 VIP, but mac only applies to L2 VIPs; an L3 VIP reaches the backend by ${vipFamily === 6 ? 'ip6tnl' : 'IPIP'} to its address, so remove mac`,
      );
    }
    const subnet = subnetFactsOf(ctx, backendFamily)?.subnet ?? null;
    if (vip.mode === 'l2' && subnet && ipKnown) {
      const address = parseIpAddress(backend.ip);
      if (address !== null && !cidrContains(subnet, address)) {
        add(
          backend.path,
          'ip',
          backend.ip,
          `is outside the balancer's subnet ${subnetText(ctx, backendFamily)}; an L2 backend must share the balancer's segment (use mode 'l3' for other subnets)`,
        );
      } else {
        const edge = edgeOfSubnet(ctx, backend.ip);
        if (edge) add(backend.path, 'ip', backend.ip, `is ${edge}; use a host address`);
      }
    }
  }
  if (vip.port === '*') pushAll(issues, checkProbePorts(vip));
}

/** Two VIPs clash when they share ip and protocol and their ports overlap ('*' overlaps every port). */
function checkVipClashes(vips: readonly VipSpec[], opts: CheckOptions): SpecIssue[] {
  const issues: SpecIssue[] = [];
  // ip/protocol → the VIPs seen so far, by port; linear in the number of VIPs. Nearly every ip/protocol has one VIP:
  // that one is kept as it is, and a map of ports made only for a second one (ten thousand maps cost a few tens of ms).
  const seen = new Map<string, VipSpec | Map<number | '*', VipSpec>>();
  const names = new Set<string>();
  for (const vip of vips) {
    if (names.has(vip.name)) {
      issues.push({
        path: vip.path,
        field: 'name',
        value: vip.name,
        message: `${showValue(vip.name)} is used by another VIP on the same balancer; VIP names must be unique per balancer`,
      });
    }
    names.add(vip.name);
    if (!isKnown(opts, vip.ip) || !isKnown(opts, vip.port)) continue;
    const key = `${vip.ip} ${vip.protocol}`;
    const entry = seen.get(key);
    const ports = entry === undefined || entry instanceof Map ? entry : new Map<number | '*', VipSpec>([[entry.port, entry]]);
    const other = !ports ? undefined : vip.port === '*' ? ports.values().next().value : (ports.get(vip.port) ?? ports.get('*'));
    if (!ports) seen.set(key, vip);
    else if (ports !== entry) seen.set(key, ports);
    if (other) {
      issues.push({
        path: vip.path,
        field: 'port',
        value: vip.port,
        message: `${showValue(vip.port)} clashes with ${other.path} (${vipKey(other)}) on the same balancer; each ip/protocol/port may belong to one VIP, and '*' covers every port`,
      });
    } else ports?.set(vip.port, vip);
  }
  return issues;
}

export function checkBalancerSpec(spec: BalancerSpec, opts: CheckOptions = {}): SpecIssue[] {
  const issues = [...checkSshTarget(spec.ssh, spec.path)];
  if (spec.address === undefined && spec.vips.some((v) => v.mode === 'l3' && !isIpv6(opts, v.ip))) {
    issues.push({
      path: spec.path,
      field: 'address',
      message: `is required for L3 VIPs when ssh.host (${showValue(spec.ssh.host)}) is not an IPv4 address: it is the outer source of the IPIP tunnels`,
    });
  }
  if (spec.ipv6Address === undefined && spec.vips.some((v) => v.mode === 'l3' && isIpv6(opts, v.ip))) {
    issues.push({
      path: spec.path,
      field: 'ipv6Address',
      message: `is required for L3 IPv6 VIPs when ssh.host (${showValue(spec.ssh.host)}) is not an IPv6 address: it is the outer source of the ip6tnl tunnels`,
    });
  }
  if (spec.pair && spec.address === undefined) {
    issues.push({
      path: spec.path,
      field: 'address',
      message: `is required for a member of balancer pair ${spec.pair.name} when ssh.host (${showValue(spec.ssh.host)}) is not an IPv4 address: keepalived sends its advertisements from it to the other member`,
    });
  }
  const interval = statsIntervalWithoutTextfile(spec);
  if (interval) issues.push({ path: spec.path, field: 'statsIntervalSec', value: spec.statsIntervalSec, message: interval });
  const ctx = balancerContext(spec, opts);
  for (const vip of spec.vips) checkVip(vip, ctx, issues);
  pushAll(issues, checkVipClashes(spec.vips, opts));
  return issues;
}

export function checkBackendHostSpec(spec: BackendHostSpec, opts: CheckOptions = {}): SpecIssue[] {
  const issues = [...checkSshTarget(spec.ssh, spec.path)];
  if (spec.address === undefined && spec.services.some((s) => s.mode === 'l3' && !isIpv6(opts, s.ip))) {
    issues.push({
      path: spec.path,
      field: 'address',
      message: `is required when the host serves L3 VIPs and ssh.host (${showValue(spec.ssh.host)}) is not an IPv4 address: it is the local end of ipip0`,
    });
  }
  if (spec.ipv6Address === undefined && spec.services.some((s) => s.mode === 'l3' && isIpv6(opts, s.ip))) {
    issues.push({
      path: spec.path,
      field: 'ipv6Address',
      message: `is required when the host serves L3 IPv6 VIPs and ssh.host (${showValue(spec.ssh.host)}) is not an IPv6 address: it is the local end of ${BACKEND_TUNNEL6}`,
    });
  }
  return issues;
}
