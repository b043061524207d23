import type { TerraformResource } from 'cdktf';
import { Construct } from 'constructs';
import {
  PAIR_DEFAULTS,
  PairRole,
  PairSpec,
  SpecIssue,
  checkAdvertIntervalSec,
  checkBoolean,
  checkPort,
  checkPriority,
  checkVirtualRouterId,
  cidrContains,
  parseCidr,
  parseIpAddress,
  showValue,
} from '../model';
import { IBalancer, IDsrVip, IPairMember, brand, isPairMember } from './interfaces';
import { isUnresolved, knownProps, reportIssues } from './issues';

/** VRRP settings of a balancer pair (keepalived, VRRPv3, unicast peers). */
export interface VrrpProps {
  /**
   * The VRRP virtual router id, 1–255; unique among the VRRP routers on the members' segment (two pairs on one segment
   * need two ids).
   */
  readonly virtualRouterId: number;
  /**
   * Seconds between two advertisements of the active member, 0.01 to 40.95 in steps of 0.01. The other member takes
   * over about 3 intervals after the last one it heard (measured: 0.62 s at 0.2, 3.48 s at 1).
   * @default 1 - keepalived's default
   */
  readonly advertIntervalSec?: number;
  /**
   * The primary's VRRP priority, 1–254; higher than the secondary's.
   * @default 150
   */
  readonly primaryPriority?: number;
  /**
   * The secondary's VRRP priority, 1–254; lower than the primary's.
   * @default 100
   */
  readonly secondaryPriority?: number;
  /**
   * Whether the primary takes the VIPs back once it is healthy again (failback). With false, the member holding them
   * keeps them until it fails.
   * @default true
   */
  readonly preempt?: boolean;
}

export interface BalancerPairProps {
  /** The member that holds the VIPs while it is healthy. */
  readonly primary: IBalancer;
  /** The member that takes the VIPs over when the primary fails. */
  readonly secondary: IBalancer;
  /** How keepalived elects the active member. */
  readonly vrrp: VrrpProps;
  /**
   * The TCP port on which each member's balancer runtime takes the other member's flow copies (bound to the member's
   * `address`; the peer proves its SSH host key, see "Balancer pairs" in the README). Open it between the members.
   * @default 7407
   */
  readonly flowCopyPort?: number;
}

/**
 * Two balancers that serve the same VIPs active-passive: keepalived (VRRP) keeps the VIP addresses on one member, and
 * the other takes them over when that member, its keepalived, its interface or its data plane fails. Attach VIPs to
 * the pair (`new DsrVip(stack, 'web', { balancer: pair, … })`): both members render the same ruleset, so hash-based
 * VIPs pick the same backend on either member.
 */
export class BalancerPair extends Construct implements IBalancer {
  readonly primary: IBalancer;
  readonly secondary: IBalancer;
  private readonly vrrp: VrrpProps;
  private readonly flowCopyPort: number;
  private readonly ownIssues: SpecIssue[];
  private readonly members: IPairMember[] = [];

  constructor(scope: Construct, id: string, props: BalancerPairProps) {
    super(scope, id);
    brand(this, 'balancer');
    const known = knownProps(props, ['primary', 'secondary', 'vrrp', 'flowCopyPort'], this.node.path);
    this.ownIssues = known.issues;
    this.primary = props?.primary;
    this.secondary = props?.secondary;
    this.vrrp = props?.vrrp ?? ({} as VrrpProps);
    this.flowCopyPort = props?.flowCopyPort ?? PAIR_DEFAULTS.flowCopyPort;
    const portProblem = isUnresolved(this.flowCopyPort)
      ? 'is a Terraform token, but the flow copy port must be known at synth; use a literal value'
      : checkPort(this.flowCopyPort);
    if (portProblem) this.ownIssues.push({ path: this.node.path, field: 'flowCopyPort', value: this.flowCopyPort, message: portProblem });
    const roles: [PairRole, IBalancer][] = [
      ['primary', this.primary],
      ['secondary', this.secondary],
    ];
    for (const [role, member] of roles) {
      if (!isPairMember(member)) {
        this.ownIssues.push({ path: this.node.path, field: role, value: member, message: 'is required and must be a Balancer construct (not a pair)' });
      } else if (member._pair) {
        this.ownIssues.push({
          path: this.node.path,
          field: role,
          value: member.node.path,
          message: `${member.node.path} is already a member of another balancer pair`,
        });
      } else if (this.members.includes(member)) {
        this.ownIssues.push({
          path: this.node.path,
          field: role,
          value: member.node.path,
          message: `${member.node.path} is the primary too; a pair needs two balancers`,
        });
      } else {
        if (member.vips.length)
          this.ownIssues.push({
            path: this.node.path,
            field: role,
            value: member.node.path,
            message: `${member.node.path} already has VIPs (${member.vips.map((v) => v.node.id).join(', ')}); attach VIPs to the pair, so that both members serve them`,
          });
        this.members.push(member);
      }
    }
    this.members.forEach((member, i) => member._joinPair({ spec: () => this.memberSpec(i), issues: () => this.pairIssues() }));
    reportIssues(this, () => this._issues());
  }

  /** The primary's Terraform resource (each member has its own: `primary.resource`, `secondary.resource`). */
  get resource(): TerraformResource {
    return this.primary.resource;
  }

  /** The VIPs bound to the pair, in creation order. */
  get vips(): readonly IDsrVip[] {
    return this.members[0]?.vips ?? [];
  }

  /** @internal */
  _addVip(vip: IDsrVip): void {
    this.cachedPairIssues = undefined;
    for (const m of this.members) m._addVip(vip);
  }

  /** @internal */
  _invalidate(): void {
    this.cachedPairIssues = undefined;
    for (const m of this.members) m._invalidate();
  }

  /** @internal Every problem of the pair and of both members (each once). */
  _issues(): SpecIssue[] {
    const seen = new Set<string>();
    const all = [...this.pairIssues(), ...this.members.flatMap((m) => m._issues())];
    return all.filter((i) => {
      const key = JSON.stringify([i.path, i.field, i.message]);
      return seen.has(key) ? false : (seen.add(key), true);
    });
  }

  private settings() {
    const v = this.vrrp;
    return {
      virtualRouterId: v.virtualRouterId,
      advertIntervalSec: v.advertIntervalSec ?? PAIR_DEFAULTS.advertIntervalSec,
      primaryPriority: v.primaryPriority ?? PAIR_DEFAULTS.primaryPriority,
      secondaryPriority: v.secondaryPriority ?? PAIR_DEFAULTS.secondaryPriority,
      preempt: v.preempt ?? PAIR_DEFAULTS.preempt,
    };
  }

  private cachedPairIssues?: SpecIssue[];

  /** The pair's own problems: its props, and what it needs of its members. */
  private pairIssues(): SpecIssue[] {
    if (this.cachedPairIssues) return this.cachedPairIssues;
    const path = this.node.path;
    const issues: SpecIssue[] = [...this.ownIssues];
    const vrrp = knownProps(this.vrrp, ['virtualRouterId', 'advertIntervalSec', 'primaryPriority', 'secondaryPriority', 'preempt'], path);
    for (const i of vrrp.issues) issues.push({ ...i, field: `vrrp.${i.field}` });
    const s = this.settings();
    const checks: [keyof typeof s, (v: unknown) => string | null][] = [
      ['virtualRouterId', checkVirtualRouterId],
      ['advertIntervalSec', checkAdvertIntervalSec],
      ['primaryPriority', checkPriority],
      ['secondaryPriority', checkPriority],
      ['preempt', checkBoolean],
    ];
    for (const [field, check] of checks) {
      const message = isUnresolved(s[field])
        ? `is a Terraform token, but VRRP settings must be known at synth; use a literal value`
        : s[field] === undefined
          ? `is required; ${check(1000)!.replace(/^1000 is not allowed; /, '')}`
          : check(s[field]);
      if (message) issues.push({ path, field: `vrrp.${field}`, value: s[field], message });
    }
    if (checkPriority(s.primaryPriority) === null && checkPriority(s.secondaryPriority) === null && s.primaryPriority <= s.secondaryPriority)
      issues.push({
        path,
        field: 'vrrp.secondaryPriority',
        value: s.secondaryPriority,
        message: `${s.secondaryPriority} is not allowed; use a priority below the primary's (${s.primaryPriority})`,
      });
    if (this.members.length === 2) pushMemberIssues(issues, path, this.members, this.vips);
    this.cachedPairIssues = issues;
    return issues;
  }

  private memberSpec(index: number): PairSpec | undefined {
    if (this.pairIssues().length || this.members.length !== 2) return undefined;
    const s = this.settings();
    const peer = this.members[1 - index];
    const view = peer._memberView();
    const role: PairRole = index === 0 ? 'primary' : 'secondary';
    return {
      path: this.node.path,
      name: this.node.id,
      role,
      peerAddress: view.address!,
      peerName: peer.node.id,
      virtualRouterId: s.virtualRouterId,
      priority: role === 'primary' ? s.primaryPriority : s.secondaryPriority,
      advertIntervalSec: s.advertIntervalSec,
      preempt: s.preempt,
      flowCopyPort: this.flowCopyPort,
      peerSsh: {
        host: view.sshHost as string,
        port: (view.sshPort as number | undefined) ?? 22,
        ...(view.sshHostKey !== undefined && { hostKey: view.sshHostKey as string }),
        ...(view.sshKnownHostsFile !== undefined && { knownHostsFile: view.sshKnownHostsFile as string }),
      },
    };
  }
}

/** Distinct hosts with known addresses; for L2 VIPs, one segment. */
function pushMemberIssues(issues: SpecIssue[], path: string, members: readonly IPairMember[], vips: readonly IDsrVip[]): void {
  const [a, b] = members.map((m) => ({ path: m.node.path, ...m._memberView() }));
  const roles = ['primary', 'secondary'] as const;
  [a, b].forEach((m, i) => {
    if (m.address === undefined)
      issues.push({
        path,
        field: `${roles[i]}.address`,
        message: `${m.path} has no IPv4 address (set address, or an IPv4 ssh.host): keepalived's unicast peers need both members' addresses`,
      });
  });
  if (a.address !== undefined && a.address === b.address && !isUnresolved(a.address))
    issues.push({
      path,
      field: 'secondary.address',
      value: b.address,
      message: `${showValue(b.address)} is the primary's address too; a pair needs two hosts`,
    });
  else if (typeof a.sshHost === 'string' && a.sshHost === b.sshHost && !isUnresolved(a.sshHost) && (a.sshPort ?? 22) === (b.sshPort ?? 22))
    issues.push({
      path,
      field: 'secondary.ssh.host',
      value: b.sshHost,
      message: `${showValue(b.sshHost)} is the primary's SSH target too; a pair needs two hosts`,
    });
  const l2 = vips.some((v) => (v._parse().value?.mode ?? 'l2') === 'l2');
  if (!l2) return;
  if (a.subnet && b.subnet && a.subnet !== b.subnet && !isUnresolved(a.subnet) && !isUnresolved(b.subnet))
    issues.push({
      path,
      field: 'secondary.subnet',
      value: b.subnet,
      message: `${showValue(b.subnet)} differs from the primary's ${showValue(a.subnet)}; the members of a pair with L2 VIPs must share one segment (the VIPs move between them by ARP)`,
    });
  for (const [m, other, role] of [
    [a, b, 'primary'],
    [b, a, 'secondary'],
  ] as const) {
    const cidr = other.subnet && !isUnresolved(other.subnet) ? parseCidr(other.subnet) : null;
    const address = m.address && !isUnresolved(m.address) ? parseIpAddress(m.address) : null;
    if (cidr && address && !cidrContains(cidr, address))
      issues.push({
        path,
        field: `${role}.address`,
        value: m.address,
        message: `${showValue(m.address)} is outside the other member's subnet ${other.subnet}; the members of a pair with L2 VIPs must share one segment`,
      });
  }
}
