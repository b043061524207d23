/**
 * Shared rendering fixtures: the specs the render tests snapshot, and the registry of EVERY ruleset the suite
 * renders, which test/model/nft-check.test.ts feeds to the real `nft -c -f`. A test that renders a new kind of
 * ruleset adds it here, so it cannot escape the kernel check.
 */
import { joinBalancerReview } from './review';
import {
  ALGORITHMS,
  Algorithm,
  HealthCheck,
  BackendHostSpec,
  BalancerFacts,
  BalancerSpec,
  Mode,
  NftTable,
  NftTableFacts,
  PROTOCOLS,
  StrictSpecSchemas,
  checkBackendHostSpec,
  checkBalancerSpec,
  formatIssues,
  planBackendHost,
  planBalancerHost,
  renderBalancerReview,
  renderNftReload,
} from '../../model';
import { HOST_KEY, LB_IP, LB_MAC, fillPendingDefines, macOf } from './common';
import { tableFactsOf } from '../../model/nft/table-update';
import { stackRulesets } from './stacks';
import { primarySide } from '../../lab/pair-spec';

export { HOST_KEY, LB_IP, LB_MAC, fillPendingDefines, macOf };
/** The balancer's own IPv6 address in the IPv6 cases. */
export const LB_IP6 = 'fd00:1::2';
export const FRESH: NftTableFacts = { exists: false, counters: [], maps: [], sets: [], chains: [], sizes: {}, hooks: {} };

export interface BackendInput {
  readonly name: string;
  readonly ip: string;
  readonly weight?: number;
  readonly mac?: string;
}

export interface VipInput {
  readonly name: string;
  readonly ip: string;
  readonly port: number | '*';
  readonly protocol?: string;
  readonly mode?: Mode;
  readonly algorithm?: Algorithm;
  readonly flowTimeoutSec?: number;
  readonly mssClamp?: number;
  readonly healthCheck?: HealthCheck;
  readonly backends: readonly BackendInput[];
}

/** Three backends on the balancer's /24, weights 1:2:3 unless given. */
export function backends(weights: readonly number[] = [1, 2, 3], base = 11): BackendInput[] {
  return weights.map((weight, i) => ({ name: `be${i + 1}`, ip: `10.0.1.${base + i}`, weight }));
}

/** Three IPv6 backends on the balancer's IPv6 /64 (fd00:1::11, …), weights 1:2:3 unless given. */
export function backends6(weights: readonly number[] = [1, 2, 3], base = 11): BackendInput[] {
  return weights.map((weight, i) => ({ name: `be${i + 1}`, ip: `fd00:1::${base + i}`, weight }));
}

/** A validated balancer spec (strict schema + cross-object checks); throws the formatted issues otherwise. */
export function balancerSpec(vips: readonly VipInput[], opts: { interface?: string; name?: string } = {}): BalancerSpec {
  const name = opts.name ?? 'lb1';
  const path = `t/${name}`;
  const input = {
    kind: 'balancer',
    path,
    name,
    ssh: { host: LB_IP, hostKey: HOST_KEY },
    interface: opts.interface ?? 'eth0',
    address: LB_IP,
    subnet: '10.0.1.0/24',
    ...(vips.some((v) => v.ip.includes(':')) ? { ipv6Address: LB_IP6, ipv6Subnet: 'fd00:1::/64' } : {}),
    vips: vips.map((v) => ({
      ...v,
      path: `${path}/${v.name}`,
      backends: v.backends.map((b) => ({ ...b, path: `${path}/${v.name}/${b.name}` })),
    })),
  };
  const spec = StrictSpecSchemas.BalancerSpecSchema.parse(input);
  const issues = checkBalancerSpec(spec);
  if (issues.length) throw new Error(formatIssues(issues));
  return spec;
}

/** The peer of the pair member `pairMember` makes, and its (lab-style) pinned host key. */
export const PEER_IP = '10.0.1.3';

/** `spec` as the primary of a balancer pair whose secondary is PEER_IP. */
export function pairMember(spec: BalancerSpec): BalancerSpec {
  return { ...spec, pair: primarySide(PEER_IP, HOST_KEY) };
}

/** What the agent would learn on the balancer at apply time. */
export function factsFor(spec: BalancerSpec): BalancerFacts {
  const backendMacs: Record<string, string> = {};
  for (const vip of spec.vips) for (const b of vip.backends) backendMacs[b.ip] = macOf(b.ip);
  return { interfaceMac: LB_MAC, backendMacs };
}

const vip = (name: string, ip: string, port: number | '*', rest: Partial<VipInput> = {}): VipInput => ({ name, ip, port, backends: backends(), ...rest });

/** Balancer cases for snapshots and nft checks: every mode × algorithm (each with a TCP and a UDP VIP), and more. */
export const BALANCER_CASES: { readonly name: string; readonly spec: BalancerSpec }[] = [
  ...(['l2', 'l3'] as const).flatMap((mode) =>
    ALGORITHMS.map((algorithm) => {
      // Maglev tables have >= 50 slots per backend: two backends keep the snapshot readable (127 slots).
      const bes = algorithm === 'consistent-hash' ? backends([1, 2]) : backends();
      const vips = PROTOCOLS.map((protocol, i) =>
        vip(`${protocol}${i}`, `10.0.1.${100 + i}`, protocol === 'tcp' ? 80 : 53, {
          protocol,
          mode,
          // least connections needs the client's FIN or RST: refused on UDP, whose VIP uses round robin here
          algorithm: protocol === 'udp' && algorithm.includes('least-connections') ? 'round-robin' : algorithm,
          backends: bes,
          ...(mode === 'l3' && protocol === 'tcp' ? { mssClamp: 1400 } : {}),
        }),
      );
      return { name: `${mode} ${algorithm}`, spec: balancerSpec(vips) };
    }),
  ),
  {
    name: "l2 all-ports '*' VIPs next to a single-port VIP",
    spec: balancerSpec([
      vip('anytcp', '10.0.1.100', '*', { algorithm: 'source-hash' }),
      vip('anyudp', '10.0.1.100', '*', { protocol: 'udp', algorithm: 'round-robin', flowTimeoutSec: 30 }),
      vip('web', '10.0.1.101', 443, { algorithm: 'weighted-round-robin' }),
    ]),
  },
  {
    name: "l3 all-ports '*' VIP",
    spec: balancerSpec([vip('anyl3', '10.0.1.100', '*', { mode: 'l3', algorithm: 'weighted-round-robin', backends: backends([1, 1], 21) })]),
  },
  {
    name: 'l2 drained backend (weight 0)',
    spec: balancerSpec([
      vip('web', '10.0.1.100', 80, { backends: backends([0, 1, 2]) }),
      vip('dns', '10.0.1.101', 53, { protocol: 'udp', algorithm: 'round-robin', backends: backends([1, 0, 1]) }),
    ]),
  },
  {
    name: 'l2 every backend drained',
    spec: balancerSpec([vip('web', '10.0.1.100', 80, { backends: backends([0, 0]) })]),
  },
  {
    name: 'mixed l2 and l3 on a 15-character interface, explicit MACs',
    spec: balancerSpec(
      [
        vip('l2web', '10.0.1.100', 80, { backends: backends([1, 2]).map((b) => ({ ...b, mac: macOf(b.ip) })) }),
        vip('l3web', '10.0.1.101', 80, {
          mode: 'l3',
          backends: [
            { name: 'far1', ip: '10.9.0.5' },
            { name: 'far2', ip: '192.168.77.200', weight: 3 },
          ],
        }),
      ],
      { interface: 'vlan.100_dsr-lb' },
    ),
  },
  {
    name: 'pair member: l2 and l3, TCP and UDP, IPv4 and IPv6 (IPv4 flows noted for the copy to the peer)',
    spec: pairMember(
      balancerSpec([
        vip('web', '10.0.1.100', 80, { algorithm: 'weighted-round-robin' }),
        vip('dns', '10.0.1.100', 53, { protocol: 'udp', algorithm: 'round-robin', flowTimeoutSec: 30 }),
        vip('far', '10.0.1.101', 443, { mode: 'l3', algorithm: 'least-connections', backends: backends([1, 1], 21) }),
        vip('web6', 'fd00:1::100', 80, { algorithm: 'weighted-round-robin', backends: backends6() }),
      ]),
    ),
  },
  // IPv6: every mode × algorithm on an IPv6 TCP and UDP VIP, beside an IPv4 VIP of the same kind (dual stack)
  ...(['l2', 'l3'] as const).flatMap((mode) =>
    ALGORITHMS.map((algorithm) => {
      const bes6 = algorithm === 'consistent-hash' ? backends6([1, 2]) : backends6();
      const vips = PROTOCOLS.map((protocol, i) =>
        vip(`${protocol}6`, `fd00:1::${100 + i}`, protocol === 'tcp' ? 80 : 53, {
          protocol,
          mode,
          algorithm: protocol === 'udp' && algorithm.includes('least-connections') ? 'round-robin' : algorithm,
          backends: bes6,
          ...(mode === 'l3' && protocol === 'tcp' ? { mssClamp: 1380 } : {}),
        }),
      );
      const v4 = vip('web4', '10.0.1.100', 80, { mode, algorithm, backends: algorithm === 'consistent-hash' ? backends([1, 2]) : backends() });
      return { name: `dual stack ${mode} ${algorithm}`, spec: balancerSpec([v4, ...vips]) };
    }),
  ),
  {
    name: "dual stack all-ports '*' VIPs on dual-stack hosts (one MAC per host), l2 and l3, IPv6 backends off the segment",
    spec: balancerSpec([
      vip('any4', '10.0.1.100', '*', { algorithm: 'source-hash' }),
      // each IPv6 backend on the host of an IPv4 one: one MAC for both families
      vip('any6', 'fd00:1::100', '*', { algorithm: 'source-hash', backends: backends6().map((b, i) => ({ ...b, mac: macOf(`10.0.1.${11 + i}`) })) }),
      vip('far6', 'fd00:1::101', 443, {
        mode: 'l3',
        backends: [
          { name: 'far1', ip: 'fd00:9::5' },
          { name: 'far2', ip: '2001:db8:77::200', weight: 3 },
        ],
      }),
    ]),
  },
];

export function backendHostSpec(name: string, services: BackendHostSpec['services'], persist = true): BackendHostSpec {
  const spec = StrictSpecSchemas.BackendHostSpecSchema.parse({
    kind: 'backend',
    path: `t/${name}`,
    name,
    ssh: { host: '10.0.1.11', hostKey: HOST_KEY },
    address: '10.0.1.11',
    ...(services.some((s) => s.ip.includes(':')) ? { ipv6Address: 'fd00:1::11' } : {}),
    persist,
    services,
  });
  const issues = checkBackendHostSpec(spec);
  if (issues.length) throw new Error(formatIssues(issues));
  return spec;
}

export const BACKEND_HOST_CASES: { readonly name: string; readonly spec: BackendHostSpec }[] = [
  {
    name: 'l2-only host',
    spec: backendHostSpec('web1', [
      { path: 't/lb1/web', ip: '10.0.1.100', port: 80, protocol: 'tcp', mode: 'l2' },
      { path: 't/lb1/dns', ip: '10.0.1.101', port: 53, protocol: 'udp', mode: 'l2' },
    ]),
  },
  {
    name: 'l3 host (also serving an l2 VIP)',
    spec: backendHostSpec('web2', [
      { path: 't/lb1/web', ip: '10.0.1.100', port: 80, protocol: 'tcp', mode: 'l2' },
      { path: 't/lb1/far', ip: '10.0.2.100', port: 443, protocol: 'tcp', mode: 'l3', mssClamp: 1440 },
      { path: 't/lb1/far80', ip: '10.0.2.101', port: 80, protocol: 'tcp', mode: 'l3', mssClamp: 1400 },
      { path: 't/lb1/farany', ip: '10.0.2.102', port: '*', protocol: 'udp', mode: 'l3', mssClamp: 1440 },
    ]),
  },
  {
    name: 'l3 host without persistence',
    spec: backendHostSpec('web3', [{ path: 't/lb1/far', ip: '10.0.2.100', port: 443, protocol: 'tcp', mode: 'l3', mssClamp: 1440 }], false),
  },
  {
    name: 'l2 IPv6-only host',
    spec: backendHostSpec('web6', [
      { path: 't/lb1/web6', ip: 'fd00:1::100', port: 80, protocol: 'tcp', mode: 'l2' },
      { path: 't/lb1/dns6', ip: 'fd00:1::101', port: 53, protocol: 'udp', mode: 'l2' },
    ]),
  },
  {
    name: 'dual stack host, l2 and l3 in both families',
    spec: backendHostSpec('web7', [
      { path: 't/lb1/web', ip: '10.0.1.100', port: 80, protocol: 'tcp', mode: 'l2' },
      { path: 't/lb1/web6', ip: 'fd00:1::100', port: 80, protocol: 'tcp', mode: 'l2' },
      { path: 't/lb1/far', ip: '10.0.2.100', port: 443, protocol: 'tcp', mode: 'l3', mssClamp: 1440 },
      { path: 't/lb1/far6', ip: 'fd00:2::100', port: 443, protocol: 'tcp', mode: 'l3' },
      { path: 't/lb1/far6b', ip: 'fd00:2::101', port: 443, protocol: 'tcp', mode: 'l3', mssClamp: 1380 },
    ]),
  },
];

export interface RenderedRuleset {
  /** Unique, readable: `<case> | <form>`. */
  readonly name: string;
  readonly text: string;
  /** Load this ruleset (by name) first: a reload that deletes stale objects only makes sense against them. */
  readonly after?: string;
}

const rendered = new Map<string, RenderedRuleset>();

/** Every test that renders a ruleset registers it; the nft check loads the same registry. */
export function registerRuleset(r: RenderedRuleset): RenderedRuleset {
  const existing = rendered.get(r.name);
  if (existing && existing.text !== r.text) throw new Error(`ruleset ${r.name} registered twice with different text`);
  rendered.set(r.name, r);
  return r;
}

export interface BalancerRenders {
  /** The review text the plan shows (apply-time MACs pending). */
  readonly plan: string;
  /** The boot file (declarative, with facts): what `nft -f` loads at boot. */
  readonly boot: string;
  /** The in-place reload transaction on a host without the table. */
  readonly reload: string;
  readonly table: NftTable;
}

export function renderBalancerCase(name: string, spec: BalancerSpec): BalancerRenders {
  const facts = factsFor(spec);
  const plan = planBalancerHost(spec, facts);
  const out: BalancerRenders = {
    plan: joinBalancerReview(renderBalancerReview(spec)),
    boot: plan.files.find((f) => f.path.endsWith('.nft'))!.content,
    reload: renderNftReload(plan.table, FRESH),
    table: plan.table,
  };
  registerRuleset({ name: `${name} | plan`, text: fillPendingDefines(out.plan) });
  registerRuleset({ name: `${name} | boot`, text: out.boot });
  registerRuleset({ name: `${name} | reload`, text: out.reload });
  return out;
}

/** The reload that follows `before` with `after`'s configuration, given the objects `before` created. */
export function renderShrinkingReload(beforeName: string, before: BalancerSpec, after: BalancerSpec, name: string): string {
  // what the agent knows of a table it loaded (its element keys of the VIP statistics sets included)
  const facts = tableFactsOf(planBalancerHost(before, factsFor(before)).table);
  const text = renderNftReload(planBalancerHost(after, factsFor(after)).table, facts);
  registerRuleset({ name, text, after: `${beforeName} | reload` });
  return text;
}

export function renderBackendHostCase(name: string, spec: BackendHostSpec) {
  const plan = planBackendHost(spec);
  if (plan.mssClamp) registerRuleset({ name: `${name} | mss clamp`, text: plan.mssClamp.ruleset });
  return plan;
}

/** Renders every fixture once (idempotent), then returns the registry, including the construct stacks' rulesets. */
export function allRenderedRulesets(): RenderedRuleset[] {
  for (const c of BALANCER_CASES) renderBalancerCase(c.name, c.spec);
  for (const c of BACKEND_HOST_CASES) renderBackendHostCase(c.name, c.spec);
  renderShrinkingReload(SHRINK_BASE.name, SHRINK_BASE.spec, shrunkSpec(), SHRINK_NAME);
  for (const r of stackRulesets()) registerRuleset(r);
  return [...rendered.values()];
}

/** 'l2 round-robin' has a tcp and a udp VIP; the shrinking reload drops the udp one. */
export const SHRINK_BASE = BALANCER_CASES.find((c) => c.name === 'l2 round-robin')!;
export const SHRINK_NAME = `${SHRINK_BASE.name} | reload after removing the udp VIP`;
export const shrunkSpec = (): BalancerSpec => ({ ...SHRINK_BASE.spec, vips: SHRINK_BASE.spec.vips.filter((v) => v.protocol === 'tcp') });
