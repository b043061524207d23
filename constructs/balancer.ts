import { TerraformResource } from 'cdktf';
import { Construct } from 'constructs';
import {
  BalancerSpec,
  FieldCheck,
  SpecError,
  SpecIssue,
  VipSpec,
  checkBalancerSpec,
  checkCidr,
  checkIpv4,
  checkIpv6,
  checkIpv6Cidr,
  parseIpAddress,
  parseIpv4,
  pushAll,
  renderBalancerReview,
} from '../model';
import { emitHostResource, emitRemovedHost } from './host-resource';
import { SynthSchemas, defined, isUnresolved, knownProps, parseCandidate, reportIssues } from './issues';
import type { SshTarget } from './ssh-target';
import { IBalancer, IDsrVip, IPairMember, PairMembership, brand } from './interfaces';

export interface BalancerProps {
  /** How to reach the balancer over SSH. */
  readonly ssh: SshTarget;
  /** The interface that receives VIP traffic; the ingress hook and the L2 rewrite use it. */
  readonly interface: string;
  /**
   * The balancer's own IPv4 address: the outer source of L3 (IPIP) tunnels, and an address no VIP or backend
   * may reuse.
   * @default - ssh.host when it is an IPv4 address or a Terraform token
   */
  readonly address?: string;
  /**
   * The balancer's own IPv6 address: the outer source of L3 IPv6 (ip6tnl) tunnels, and an address no VIP or backend
   * may reuse.
   * @default - ssh.host when it is an IPv6 address
   */
  readonly ipv6Address?: string;
  /**
   * CIDR of the balancer's IPv4 L2 segment. When set, IPv4 L2 backends outside it are refused at synth.
   * @default - no subnet check
   */
  readonly subnet?: string;
  /**
   * CIDR of the balancer's IPv6 L2 segment (such as fd00:1::/64). When set, IPv6 L2 backends outside it are refused
   * at synth.
   * @default - no IPv6 subnet check
   */
  readonly ipv6Subnet?: string;
  /**
   * MAC address of `interface`, used as the source MAC of forwarded frames.
   * @default - read from the interface at apply time
   */
  readonly mac?: string;
  /**
   * Where the balancer runtime writes its statistics in Prometheus' text format, for node_exporter's textfile
   * collector: `true` for `/var/lib/prometheus/node-exporter/tula_dsr.prom` (the folder Debian's
   * prometheus-node-exporter package reads), or an absolute path ending in `.prom` of letters, digits, `.`, `_`, `-`
   * and `/`. The folder must exist on the balancer. The runtime (Node.js 18 or later on the balancer) then runs even
   * without health checks or least connections. Known at synth (no Terraform token).
   * @default false - no textfile
   */
  readonly statsTextfile?: string | boolean;
  /**
   * Seconds between two writes of the statistics textfile, an integer from 1 to 3600; only with `statsTextfile`.
   * Each write lists the balancer's counters once (about 0.5 s of nft time at 10,000 VIPs). Known at synth.
   * @default 15
   */
  readonly statsIntervalSec?: number;
}

/**
 * A Linux host that balances VIP traffic in DSR mode with one nftables table, applied over SSH. It becomes one
 * Terraform resource whose triggers carry the whole ruleset, so a plan shows each rule that changes.
 */
export class Balancer extends Construct implements IBalancer, IPairMember {
  /** The Terraform resource that applies this balancer's configuration. */
  readonly resource: TerraformResource;
  private readonly props: BalancerProps;
  private readonly propIssues: SpecIssue[];
  private readonly vipList: IDsrVip[] = [];
  private cachedIssues?: SpecIssue[];
  /** The spec, built once for both synth passes (a full parse of every VIP). */
  private cachedSpec?: BalancerSpec;
  private membership?: PairMembership;

  /**
   * Use in place of a deleted balancer construct (same scope and id) for one apply: Terraform then destroys its
   * resource *and* runs tula-dsr's remove on the host, which a plain deletion skips (Terraform drops a resource's
   * destroy-time provisioner together with its block). Delete this line too once that apply has run.
   */
  static retire(scope: Construct, id: string): void {
    emitRemovedHost(scope, id);
  }

  constructor(scope: Construct, id: string, props: BalancerProps) {
    super(scope, id);
    brand(this, 'balancer');
    brand(this, 'pairMember');
    ({ props: this.props, issues: this.propIssues } = knownProps(
      props,
      ['ssh', 'interface', 'address', 'ipv6Address', 'subnet', 'ipv6Subnet', 'mac', 'statsTextfile', 'statsIntervalSec'],
      this.node.path,
    ));
    reportIssues(this, () => this._issues());
    this.resource = emitHostResource(this, 'host', {
      spec: () => this.toSpec(),
      review: (spec) => renderBalancerReview(spec),
      pendingKeys: ['ruleset', 'addresses', 'tunnels'],
      hasProblems: () => this._issues().length > 0,
      dependsOn: () => [...new Set(this.vipList.flatMap((v) => v.backends.flatMap((b) => (b.host ? [b.host.resource] : []))))],
    });
  }

  /** The VIPs bound to this balancer, in creation order. */
  get vips(): readonly IDsrVip[] {
    return this.vipList;
  }

  /** @internal */
  _addVip(vip: IDsrVip): void {
    this.vipList.push(vip);
    this._invalidate();
  }

  /** @internal */
  _invalidate(): void {
    this.cachedIssues = undefined;
    this.cachedSpec = undefined;
  }

  /** @internal The pair this balancer is a member of, if any. */
  get _pair(): PairMembership | undefined {
    return this.membership;
  }

  /** @internal Called once by BalancerPair. */
  _joinPair(membership: PairMembership): void {
    this.membership = membership;
    this._invalidate();
  }

  /** @internal What a pair checks about its members, as the user gave it. */
  _memberView(): { address?: string; subnet?: string; sshHost?: unknown; sshPort?: unknown; sshHostKey?: unknown; sshKnownHostsFile?: unknown } {
    const { ssh, address, subnet } = this.props;
    const sshHost = ssh?.host;
    const defaultAddress = typeof sshHost === 'string' && (isUnresolved(sshHost) || parseIpv4(sshHost) !== null) ? sshHost : undefined;
    return { address: address ?? defaultAddress, subnet, sshHost, sshPort: ssh?.port, sshHostKey: ssh?.hostKey, sshKnownHostsFile: ssh?.knownHostsFile };
  }

  private candidate(vips: VipSpec[]): Record<string, unknown> {
    const { ssh, interface: iface, ipv6Address, subnet, ipv6Subnet, mac, ...rest } = this.props;
    delete (rest as { address?: string }).address;
    const sshHost = ssh?.host;
    return defined({
      ...rest,
      kind: 'balancer',
      path: this.node.path,
      name: this.node.id,
      ssh: ssh && typeof ssh === 'object' ? defined({ ...ssh }) : ssh,
      interface: iface,
      address: this._memberView().address,
      ipv6Address: ipv6Address ?? (typeof sshHost === 'string' && parseIpAddress(sshHost)?.family === 6 ? sshHost : undefined),
      subnet,
      ipv6Subnet,
      mac,
      pair: this.membership?.spec(),
      vips,
    });
  }

  /**
   * @internal Every problem in this balancer, its VIPs and their backends, collected at once. Each construct's
   * validation reports the ones carrying its own path, so cross-object problems reach the right construct.
   */
  _issues(): SpecIssue[] {
    if (this.cachedIssues) return this.cachedIssues;
    // the pair's own problems block this member's resource too (the pair construct reports them)
    const issues: SpecIssue[] = [...this.propIssues, ...(this.membership?.issues() ?? [])];
    const own = parseCandidate(SynthSchemas.BalancerSpecSchema, this.candidate([]), this.node.path);
    pushAll(issues, own.issues);
    const vips: VipSpec[] = [];
    for (const vip of this.vipList) {
      const parsed = vip._parse();
      pushAll(issues, parsed.issues);
      if (parsed.value) vips.push(parsed.value);
    }
    if (own.value) pushAll(issues, checkBalancerSpec({ ...own.value, vips }, { isUnresolved }));
    else {
      // A mistake in the balancer's own fields must not hide its VIPs' cross-object problems: check them against
      // the fields that are usable (the balancer's own problems are already listed above).
      const usable = (v: unknown, check: FieldCheck) => (v !== undefined && (isUnresolved(v) || check(v) === null) ? v : undefined);
      const candidate = this.candidate([]);
      const partial = {
        ...candidate,
        ssh: {},
        address: usable(candidate.address, checkIpv4),
        subnet: usable(candidate.subnet, checkCidr),
        ipv6Address: usable(candidate.ipv6Address, checkIpv6),
        ipv6Subnet: usable(candidate.ipv6Subnet, checkIpv6Cidr),
        vips,
      } as BalancerSpec;
      pushAll(
        issues,
        checkBalancerSpec(partial, { isUnresolved }).filter((i) => i.path !== this.node.path),
      );
    }
    this.cachedIssues = issues;
    return issues;
  }

  /** The validated spec the agent receives. Throws SpecError listing every problem. */
  toSpec(): BalancerSpec {
    const issues = this._issues();
    if (issues.length) throw new SpecError(issues);
    this.cachedSpec ??= SynthSchemas.BalancerSpecSchema.parse(this.candidate(this.vipList.map((v) => v._parse().value!)));
    return this.cachedSpec;
  }
}
