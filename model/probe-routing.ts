import { renderCommand } from './shell';
import { tunnelName } from './nft/balancer';
import { familyOf } from './nft/pools';
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
  const v4 = targets.filter((t) => familyOf(t.backend.ip) === 4);
  const v6 = targets.filter((t) => familyOf(t.backend.ip) === 6);
  const routes = (list: readonly ProbeTarget[]) => {
    const byBackend = new Map<string, string[]>();
    for (const { backend } of list) {
      const ip = backend.ip;
      if (!byBackend.has(ip)) byBackend.set(ip, backend.mode === 'l2' ? [ip, 'via', ip, 'dev', spec.interface, 'onlink'] : [ip, 'dev', tunnelName(ip, spec)]);
    }
    return [...byBackend.values()];
  };
  const rule = ['rule', 'add', 'pref', String(PROBE_RULE_PRIORITY), 'fwmark', String(PROBE_MARK), 'lookup', String(PROBE_ROUTE_TABLE)];
  const table = ['table', String(PROBE_ROUTE_TABLE)];
  // IPv6 only when an IPv6 backend is probed: an IPv4-only balancer's probe routing stays as it was before IPv6 came
  const nft = [
    `# Managed by tula-dsr's runtime: health probes through the VIP (see model/probe-routing.ts).`,
    ...probeTableLines(FAMILY_TERMS[4], v4, ports),
    ...(v6.length ? probeTableLines(FAMILY_TERMS[6], v6, ports) : []),
    `table netdev ${PROBE_TABLE}`,
    `delete table netdev ${PROBE_TABLE}`,
    `table netdev ${PROBE_TABLE} {`,
    ...replyMapLines(FAMILY_TERMS[4], v4, ports),
    ...(v6.length ? replyMapLines(FAMILY_TERMS[6], v6, ports) : []),
    '\tchain ingress {',
    // before the balancer's own table (-300): a reply is never a VIP's traffic, but it must not look like one
    `\t\ttype filter hook ingress device "${spec.interface}" priority -400; policy accept;`,
    replyRewrite(FAMILY_TERMS[4]),
    ...(v6.length ? [replyRewrite(FAMILY_TERMS[6])] : []),
    '\t}',
    '}',
    '',
  ].join('\n');
  const commands: string[][] = [
    ...routes(v4).map((r) => ['ip', 'route', 'replace', ...r, ...table]),
    ['ip', ...rule],
    ...(v6.length ? [...routes(v6).map((r) => ['ip', '-6', 'route', 'replace', ...r, ...table]), ['ip', '-6', ...rule]] : []),
  ];
  return { nft, commands };
}

/** The address expressions and names of one family's probe rewrite: IPv4 keeps the names it had before IPv6 came. */
interface ProbeFamily {
  readonly family: 'ip' | 'ip6';
  readonly protocol: 'ip' | 'ip6';
  /** Appended to the reply map's name. */
  readonly suffix: '' | '6';
}
const FAMILY_TERMS: Readonly<Record<4 | 6, ProbeFamily>> = {
  4: { family: 'ip', protocol: 'ip', suffix: '' },
  6: { family: 'ip6', protocol: 'ip6', suffix: '6' },
};

const elementLines = (list: readonly string[]) => (list.length ? [`\t\telements = { ${list.join(', ')} }`] : []);

/** The `ip` (or `ip6`) table that marks a probe for the probe routes and writes the VIP in as its destination. */
function probeTableLines(f: ProbeFamily, targets: readonly ProbeTarget[], ports: ReadonlyMap<string, number>): string[] {
  const probes = targets.map((t) => `${t.backend.ip} . ${ports.get(t.key)!}`);
  const out = targets.map((t) => `${t.backend.ip} . ${ports.get(t.key)!} : ${t.via.ip}`);
  return [
    `table ${f.family} ${PROBE_TABLE}`,
    `delete table ${f.family} ${PROBE_TABLE}`,
    `table ${f.family} ${PROBE_TABLE} {`,
    // Debian's 6.1 refuses a map where a set is looked up (EINVAL; 6.18 takes it), hence the set beside the map
    '\tset probes {',
    `\t\ttypeof ${f.protocol} daddr . th sport`,
    ...elementLines(probes),
    '\t}',
    '\tmap to_vip {',
    `\t\ttypeof ${f.protocol} daddr . th sport : ${f.protocol} daddr`,
    ...elementLines(out),
    '\t}',
    '\tchain output {',
    // a route chain: the kernel routes a packet again when the chain changed its mark
    '\t\ttype route hook output priority mangle; policy accept;',
    `\t\tmeta l4proto { tcp, udp } th sport ${PROBE_PORT_FIRST}-${last} ${f.protocol} daddr . th sport @probes meta mark set ${PROBE_MARK}`,
    '\t}',
    '\tchain postrouting {',
    '\t\ttype filter hook postrouting priority filter; policy accept;',
    `\t\tmeta l4proto { tcp, udp } th sport ${PROBE_PORT_FIRST}-${last} ${f.protocol} daddr set ${f.protocol} daddr . th sport map @to_vip`,
    '\t}',
    '}',
  ];
}

/** The netdev map that gives a reply from the VIP its backend's address back, before the stack sees it. */
function replyMapLines(f: ProbeFamily, targets: readonly ProbeTarget[], ports: ReadonlyMap<string, number>): string[] {
  return [
    `\tmap from_vip${f.suffix} {`,
    `\t\ttypeof ${f.protocol} saddr . th dport : ${f.protocol} saddr`,
    ...elementLines(targets.map((t) => `${t.via.ip} . ${ports.get(t.key)!} : ${t.backend.ip}`)),
    '\t}',
  ];
}

const replyRewrite = (f: ProbeFamily) =>
  `\t\tmeta protocol ${f.protocol} meta l4proto { tcp, udp } th dport ${PROBE_PORT_FIRST}-${last} ${f.protocol} saddr set ${f.protocol} saddr . th dport map @from_vip${f.suffix}`;

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
    `while ${renderCommand(['ip', '-6', 'rule', 'del', 'pref', String(PROBE_RULE_PRIORITY)])} 2>/dev/null; do :; done`,
    `${renderCommand(['ip', '-6', 'route', 'flush', 'table', String(PROBE_ROUTE_TABLE)])} 2>/dev/null`,
    ...['ip', 'ip6', 'netdev'].map((family) => `${renderCommand(['nft', 'delete', 'table', family, PROBE_TABLE])} 2>/dev/null`),
    'true',
  ].join('; ');
}
