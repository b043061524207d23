import { Construct } from 'constructs';
import { BackendSpec, HealthCheck, SpecError, SpecIssue, parseIpAddress } from '../model';
import { IBackend, IBackendHost, IDsrVip, isBackendHost, isDsrVip } from './interfaces';
import { SynthSchemas, defined, knownProps, parseCandidate, reportIssues } from './issues';

export interface BackendProps {
  /**
   * The backend's real address, of its VIP's family (IPv4 or IPv6); may be a Terraform token.
   * @default - the address (IPv4 VIP) or ipv6Address (IPv6 VIP) of `host`
   */
  readonly ip?: string;
  /**
   * Must equal the VIP port: DSR cannot translate ports, because replies bypass the balancer.
   * @default - the VIP port
   */
  readonly port?: number;
  /**
   * Share of new flows, an integer from 0 to 1000. 0 drains: no new flows, established flows stay.
   * @default 1
   */
  readonly weight?: number;
  /**
   * L2 only: the backend's MAC address.
   * @default - resolved on the balancer at apply time (ping, then the neighbour table)
   */
  readonly mac?: string;
  /**
   * The host that serves this backend; tula-dsr then configures it (VIP on lo, ARP sysctls, tunnel).
   * @default - none: the backend host is configured outside this stack
   */
  readonly host?: IBackendHost;
  /**
   * This backend's health check, replacing the VIP's entirely (fields are not merged); `{ kind: 'none' }` exempts
   * the backend from the VIP's check.
   * @default - the VIP's healthCheck
   */
  readonly healthCheck?: HealthCheck;
}

/** One real server behind a DsrVip. */
export class Backend extends Construct implements IBackend {
  readonly vip: IDsrVip;
  readonly host?: IBackendHost;
  private readonly props: BackendProps;
  private readonly propIssues: SpecIssue[];

  constructor(scope: IDsrVip, id: string, props: BackendProps = {}) {
    super(scope, id);
    if (!isDsrVip(scope)) {
      // Outside a VIP the backend belongs to no balancer, whose validation would report its problems: refused at once.
      throw new SpecError([
        {
          path: this.node.path,
          field: 'scope',
          message: 'a Backend must be created inside a DsrVip (new Backend(vip, id, props) or vip.addBackend(id, props))',
        },
      ]);
    }
    this.vip = scope;
    ({ props: this.props, issues: this.propIssues } = knownProps(props, ['ip', 'port', 'weight', 'mac', 'host', 'healthCheck'], this.node.path));
    if (this.props.host !== undefined && !isBackendHost(this.props.host)) {
      this.propIssues.push({ path: this.node.path, field: 'host', value: this.props.host, message: 'must be a BackendHost construct' });
      const { host: _notAHost, ...rest } = this.props;
      this.props = rest;
    }
    this.host = this.props.host;
    this.host?._register(this);
    scope._addBackend(this);
    // The balancer's list holds this backend's own issues and the cross-object ones (subnet, VIP port, …).
    reportIssues(this, () => scope.balancer._issues());
  }

  /** @internal */
  _parse(): { value?: BackendSpec; issues: SpecIssue[] } {
    const { host, ip, ...rest } = this.props;
    const vipIp = this.vip._ip;
    const ipv6 = typeof vipIp === 'string' && parseIpAddress(vipIp)?.family === 6;
    const address = ip ?? (ipv6 ? host?.ipv6Address : host?.address);
    const candidate = defined({ ...rest, path: this.node.path, name: this.node.id, ip: address });
    const parsed = parseCandidate(SynthSchemas.BackendSpecSchema, candidate, this.node.path);
    if (address === undefined) {
      const issues = [...this.propIssues, ...parsed.issues.filter((i) => i.field !== 'ip')];
      const hostField = ipv6 ? 'ipv6Address' : 'address';
      issues.push({ path: this.node.path, field: 'ip', message: `is required: set ip, or set host to a BackendHost whose ${hostField} is known` });
      return { issues };
    }
    return { ...parsed, issues: [...this.propIssues, ...parsed.issues] };
  }
}
