import { TerraformResource } from 'cdktf';
import { Construct } from 'constructs';
import {
  BackendHostSpec,
  ServiceSpec,
  SpecError,
  SpecIssue,
  DEFAULTS,
  checkBackendHostSpec,
  parseIpAddress,
  parseIpv4,
  renderBackendHostReview,
  vipKey,
} from '../model';
import { IBackend, IBackendHost, brand } from './interfaces';
import { emitHostResource, emitRemovedHost } from './host-resource';
import { SynthSchemas, defined, isUnresolved, knownProps, parseCandidate, reportIssues } from './issues';
import type { SshTarget } from './ssh-target';

export interface BackendHostProps {
  /** How to reach the host over SSH. */
  readonly ssh: SshTarget;
  /**
   * The host's real IPv4 address: the default `ip` of Backends that name this host, and the local end of
   * ipip0 for L3 VIPs.
   * @default - ssh.host when it is an IPv4 address or a Terraform token
   */
  readonly address?: string;
  /**
   * The host's real IPv6 address: the default `ip` of Backends of IPv6 VIPs that name this host.
   * @default - ssh.host when it is an IPv6 address
   */
  readonly ipv6Address?: string;
  /**
   * Make the configuration survive a reboot: a file in /etc/sysctl.d and a systemd unit that restores the
   * addresses, the tunnel and the MSS clamp.
   * @default true
   */
  readonly persist?: boolean;
}

/**
 * A real server that answers DSR traffic. Its configuration is derived from every Backend that names it,
 * across VIPs and modes: each VIP on lo (and on ipip0 for L3), the ARP sysctls, rp_filter, the MSS clamp.
 */
export class BackendHost extends Construct implements IBackendHost {
  readonly resource: TerraformResource;
  /** The address Backends of IPv4 VIPs default to, if known at synth. */
  readonly address?: string;
  /** The address Backends of IPv6 VIPs default to, if known at synth. */
  readonly ipv6Address?: string;
  private readonly props: BackendHostProps;
  private readonly propIssues: SpecIssue[];
  private readonly backendList: IBackend[] = [];
  /** The problems and the spec, which both synth passes and the validation ask for: kept until a backend joins or a VIP changes. */
  private cached?: { readonly issues: SpecIssue[]; spec?: BackendHostSpec };

  /**
   * Use in place of a deleted backend host construct (same scope and id) for one apply: Terraform then destroys its
   * resource *and* runs tula-dsr's remove on the host, which a plain deletion skips (Terraform drops a resource's
   * destroy-time provisioner together with its block). Delete this line too once that apply has run.
   */
  static retire(scope: Construct, id: string): void {
    emitRemovedHost(scope, id);
  }

  constructor(scope: Construct, id: string, props: BackendHostProps) {
    super(scope, id);
    brand(this, 'backendHost');
    ({ props: this.props, issues: this.propIssues } = knownProps(props, ['ssh', 'address', 'ipv6Address', 'persist'], this.node.path));
    const sshHost = props?.ssh?.host;
    this.address = props?.address ?? (typeof sshHost === 'string' && (isUnresolved(sshHost) || parseIpv4(sshHost) !== null) ? sshHost : undefined);
    this.ipv6Address = props?.ipv6Address ?? (typeof sshHost === 'string' && parseIpAddress(sshHost)?.family === 6 ? sshHost : undefined);
    reportIssues(this, () => this.issues());
    this.resource = emitHostResource(this, 'host', {
      spec: () => this.toSpec(),
      review: (spec) => renderBackendHostReview(spec),
      pendingKeys: ['sysctl_file', 'addresses', 'mss_clamp', 'boot_unit'],
      hasProblems: () => this.issues().length > 0,
      dependsOn: () => [],
    });
  }

  /** The backends this host serves. */
  get backends(): readonly IBackend[] {
    return this.backendList;
  }

  /** @internal */
  _register(backend: IBackend): void {
    this.backendList.push(backend);
    this._invalidate();
  }

  /** @internal */
  _invalidate(): void {
    this.cached = undefined;
  }

  private services(): ServiceSpec[] {
    const seen = new Map<string, ServiceSpec>();
    for (const backend of this.backendList) {
      const vip = backend.vip._parse().value;
      if (!vip) continue;
      const service = defined({
        path: vip.path,
        ip: vip.ip,
        port: vip.port,
        protocol: vip.protocol,
        mode: vip.mode,
        mssClamp: vip.mode === 'l3' ? (vip.mssClamp ?? (parseIpAddress(vip.ip)?.family === 6 ? DEFAULTS.mssClamp6 : DEFAULTS.mssClamp)) : undefined,
      });
      const key = vipKey(vip);
      if (!seen.has(key)) seen.set(key, service);
    }
    return [...seen.values()];
  }

  private candidate(): Record<string, unknown> {
    const { ssh, address: _address, ipv6Address: _ipv6Address, ...rest } = this.props;
    return defined({
      ...rest,
      kind: 'backend',
      path: this.node.path,
      name: this.node.id,
      ssh: ssh && typeof ssh === 'object' ? defined({ ...ssh }) : ssh,
      address: this.address,
      ipv6Address: this.ipv6Address,
      services: this.services(),
    });
  }

  private issues(): SpecIssue[] {
    if (this.cached) return this.cached.issues;
    const parsed = parseCandidate(SynthSchemas.BackendHostSpecSchema, this.candidate(), this.node.path);
    const issues = [...this.propIssues, ...(parsed.value ? checkBackendHostSpec(parsed.value, { isUnresolved }) : parsed.issues)];
    this.cached = { issues };
    return issues;
  }

  /** The validated spec the agent receives. Throws SpecError listing every problem. */
  toSpec(): BackendHostSpec {
    const issues = this.issues();
    if (issues.length) throw new SpecError(issues);
    this.cached!.spec ??= SynthSchemas.BackendHostSpecSchema.parse(this.candidate());
    return this.cached!.spec;
  }
}
