import { renderCommand } from './shell';
import { tunnelName } from './nft/balancer';
import { ProbeTarget, keyProbeIdentity } from './probe-targets';
import { fnv1a32 } from './scheduling';
import type { BalancerSpec } from './spec';

/**
 * How the runtime's probes reach a service that listens on the VIP only, through one backend: the probe socket
 * connects to the backend's own address from a source port of its own, and the balancer's kernel
 *  - marks it on the way out (a `route` chain, `ip` table `tula_dsr_probe`, keyed by backend and probe port), so that
 *    a policy rule on that mark routes it again by a table of its own: straight to the backend's MAC for L2
 *    (`via <backend> onlink`, so that the next hop stays the backend after the rewrite), into the backend's tunnel
 *    for L3;
 *  - rewrites its destination to the VIP after routing (postrouting, same table), so the backend receives what a
 *    client's packet would look like, on the path a client's packet would take;
 *  - rewrites the reply's source back from the VIP to the backend (ingress, `netdev` table `tula_dsr_probe`,
 *    keyed by VIP and probe port), before the stack would drop it: its source is the balancer's own VIP.
 * The probe socket then sees an ordinary connection to the backend. Measured on kernel 6.18 with nft 1.0.6 (L2) and
 * Debian's 6.1 in the VM lab (L3): a server bound to the VIP only answers these probes and refuses a connection to
 * the backend's address.
 *
 * Why a mark, not a rule on the probe ports: the reverse path filter checks an arriving packet by looking up the
 * route back to its source as if the balancer sent it, with the ports swapped as soon as any rule matches on
 * ports. A rule on the probe ports therefore also matches the check of the probe's reply, and names the backend's
 * tunnel; on L3 the reply arrives on the balancer's interface from the router, so strict rp_filter (1, RHEL's
 * default) drops every reply. That check carries no mark (the reply's own mark, 0, with src_valid_mark), so the
 * rule on the mark leaves it alone, whatever other rules the host has. The socket's own route (and so its source
 * address) comes from the main table, as for any connection to the backend; only its packets are routed again.
 */
export const PROBE_PORT_FIRST = 61000;
/** Targets a balancer may probe: one source port each (61000–61999, above Linux's ephemeral range). */
export const PROBE_PORT_COUNT = 1000;
export const PROBE_ROUTE_TABLE = 61000;
/** The firewall mark of probe packets, which selects PROBE_ROUTE_TABLE (matched exactly, no mask). */
export const PROBE_MARK = 61000;
/** Before the main table (32766), after the local one (0). */
export const PROBE_RULE_PRIORITY = 1061;
/** Earlier runtimes added a second rule (UDP) here; the cleanup still removes it. */
const RETIRED_RULE_PRIORITY = 1062;
export const PROBE_TABLE = 'tula_dsr_probe';

/**
 * A source port per target, stable across configurations: a hash of what is probed, the next free port on a
 * collision (targets taken in key order). A port that moves would cost the target one failed probe.
 */
export function assignProbePorts(targets: readonly Pick<ProbeTarget, 'key'>[]): Map<string, number> {
  if (targets.length > PROBE_PORT_COUNT) throw new Error(`${targets.length} probe targets: at most ${PROBE_PORT_COUNT} per balancer`);
  const taken = new Set<number>();
  const ports = new Map<string, number>();
  for (const key of targets.map((t) => t.key).sort()) {
    let offset = fnv1a32(keyProbeIdentity(key)) % PROBE_PORT_COUNT;
    while (taken.has(offset)) offset = (offset + 1) % PROBE_PORT_COUNT;
    taken.add(offset);
    ports.set(key, PROBE_PORT_FIRST + offset);
  }
  return ports;
}

export interface ProbeRouting {
  /** One `nft -f` transaction that (re)creates both probe tables. */
  readonly nft: string;
  /** Commands (argv) run in order after the cleanup and the tables: the routes, then the rule. */
  readonly commands: readonly (readonly string[])[];
}

const last = PROBE_PORT_FIRST + PROBE_PORT_COUNT - 1;

/** What `installProbeRouting` sets up for these targets (ports from assignProbePorts). */
export function renderProbeRouting(spec: BalancerSpec, targets: readonly ProbeTarget[], ports: ReadonlyMap<string, number>): ProbeRouting {
  const probes: string[] = [];
  const out: string[] = [];
  const back: string[] = [];
  const routes = new Map<string, string[]>();
  for (const target of targets) {
    const port = ports.get(target.key)!;
    probes.push(`${target.backend.ip} . ${port}`);
    out.push(`${target.backend.ip} . ${port} : ${target.via.ip}`);
    back.push(`${target.via.ip} . ${port} : ${target.backend.ip}`);
    const ip = target.backend.ip;
    if (!routes.has(ip)) routes.set(ip, target.backend.mode === 'l2' ? [ip, 'via', ip, 'dev', spec.interface, 'onlink'] : [ip, 'dev', tunnelName(ip)]);
  }
  const elements = (list: readonly string[]) => (list.length ? [`\t\telements = { ${list.join(', ')} }`] : []);
  const nft = [
    `# Managed by tula-dsr's runtime: health probes through the VIP (see model/probe-routing.ts).`,
    `table ip ${PROBE_TABLE}`,
    `delete table ip ${PROBE_TABLE}`,
    `table ip ${PROBE_TABLE} {`,
    // Debian's 6.1 refuses a map where a set is looked up (EINVAL; 6.18 takes it), hence the set beside the map
    '\tset probes {',
    '\t\ttypeof ip daddr . th sport',
    ...elements(probes),
    '\t}',
    '\tmap to_vip {',
    '\t\ttypeof ip daddr . th sport : ip daddr',
    ...elements(out),
    '\t}',
    '\tchain output {',
    // a route chain: the kernel routes a packet again when the chain changed its mark
    '\t\ttype route hook output priority mangle; policy accept;',
    `\t\tmeta l4proto { tcp, udp } th sport ${PROBE_PORT_FIRST}-${last} ip daddr . th sport @probes meta mark set ${PROBE_MARK}`,
    '\t}',
    '\tchain postrouting {',
    '\t\ttype filter hook postrouting priority filter; policy accept;',
    `\t\tmeta l4proto { tcp, udp } th sport ${PROBE_PORT_FIRST}-${last} ip daddr set ip daddr . th sport map @to_vip`,
    '\t}',
    '}',
    `table netdev ${PROBE_TABLE}`,
    `delete table netdev ${PROBE_TABLE}`,
    `table netdev ${PROBE_TABLE} {`,
    '\tmap from_vip {',
    '\t\ttypeof ip saddr . th dport : ip saddr',
    ...elements(back),
    '\t}',
    '\tchain ingress {',
    // before the balancer's own table (-300): a reply is never a VIP's traffic, but it must not look like one
    `\t\ttype filter hook ingress device "${spec.interface}" priority -400; policy accept;`,
    `\t\tmeta protocol ip meta l4proto { tcp, udp } th dport ${PROBE_PORT_FIRST}-${last} ip saddr set ip saddr . th dport map @from_vip`,
    '\t}',
    '}',
    '',
  ].join('\n');
  const commands: string[][] = [
    ...[...routes.values()].map((r) => ['ip', 'route', 'replace', ...r, 'table', String(PROBE_ROUTE_TABLE)]),
    ['ip', 'rule', 'add', 'pref', String(PROBE_RULE_PRIORITY), 'fwmark', String(PROBE_MARK), 'lookup', String(PROBE_ROUTE_TABLE)],
  ];
  return { nft, commands };
}

/**
 * Shell that removes every trace of probe routing, whatever is left (each part may already be gone): run by the
 * runtime before it installs and when it stops, and by the agent after it stopped the runtime (a runtime killed
 * with SIGKILL leaves them).
 */
export function renderProbeRoutingCleanup(): string {
  const rules = [PROBE_RULE_PRIORITY, RETIRED_RULE_PRIORITY].map(
    (pref) => `while ${renderCommand(['ip', 'rule', 'del', 'pref', String(pref)])} 2>/dev/null; do :; done`,
  );
  return [
    ...rules,
    `${renderCommand(['ip', 'route', 'flush', 'table', String(PROBE_ROUTE_TABLE)])} 2>/dev/null`,
    ...['ip', 'netdev'].map((family) => `${renderCommand(['nft', 'delete', 'table', family, PROBE_TABLE])} 2>/dev/null`),
    'true',
  ].join('; ');
}
