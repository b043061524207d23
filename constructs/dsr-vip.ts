import { Construct } from 'constructs';
import { Algorithm, HealthCheck, Mode, Protocol, SpecError, SpecIssue, VipSpec, pushAll } from '../model';
import { Backend, BackendProps } from './backend';
import { IBackend, IBalancer, IDsrVip, brand, isBalancer } from './interfaces';
import { SynthSchemas, defined, knownProps, parseCandidate, reportIssues } from './issues';

export interface DsrVipProps {
  /** The balancer (or BalancerPair) that owns this VIP. */
  readonly balancer: IBalancer;
  /**
   * Name used in nft counters (`vip_<name>`) and reports.
   * @default - the construct id
   */
  readonly name?: string;
  /**
   * The virtual IPv4 or IPv6 address clients connect to; may be a Terraform token (taken as IPv4). Its backends are
   * of the same family.
   */
  readonly ip: string;
  /** The port clients connect to, or '*' for every port. Backends serve on the same port. */
  readonly port: number | '*';
  /**
   * @default 'tcp'
   */
  readonly protocol?: Protocol;
  /**
   * 'l2' rewrites the destination MAC (backends share the balancer's segment); 'l3' tunnels to the backend
   * in IPIP (backends anywhere routable).
   * @default 'l2'
   */
  readonly mode?: Mode;
  /**
   * How a new flow picks its backend. Every algorithm keeps a flow on one backend for its lifetime.
   * 'round-robin' ignores weights (weight 0 still drains); 'weighted-round-robin' splits new flows exactly by
   * weight; 'source-hash' keeps each client address on one backend; 'consistent-hash' is Maglev hashing, which
   * moves about 1/N of the flows when one of N backends comes or goes.
   * @default 'weighted-round-robin'
   */
  readonly algorithm?: Algorithm;
  /**
   * Idle seconds after which a flow's backend choice is forgotten.
   * @default 300
   */
  readonly flowTimeoutSec?: number;
  /**
   * L3 only: the TCP MSS the backends advertise for this VIP, so requests fit the IPIP tunnel (20 bytes less).
   * @default 1440 for L3 VIPs
   */
  readonly mssClamp?: number;
  /**
   * consistent-hash only: slots in the VIP's Maglev table, a prime. It stays fixed as backends come and go, so
   * that only about 1/N of the flows move; use about 100 slots per backend.
   * @default 1021
   */
  readonly hashTableSize?: number;
  /**
   * How the balancer checks this VIP's backends (a backend's own `healthCheck` replaces it for that backend). A
   * backend that fails `fall` probes in a row gets no new flows, its established flows stay, and it comes back after
   * `rise` passed probes. Probes are deduplicated by (backend address, check): every VIP that checks a backend the
   * same way shares one probe, addressed to the first of those VIPs by name and sent through that backend.
   * @default { kind: 'none' } - no checks: every backend with a weight takes new flows
   */
  readonly healthCheck?: HealthCheck;
}

/** A Layer 4 virtual IP served in Direct Server Return mode: replies go from the backends straight to clients. */
export class DsrVip extends Construct implements IDsrVip {
  readonly balancer: IBalancer;
  private readonly props: DsrVipProps;
  private readonly propIssues: SpecIssue[];
  private readonly backendList: IBackend[] = [];
  private parsed?: { value?: VipSpec; issues: SpecIssue[] };

  constructor(scope: Construct, id: string, props: DsrVipProps) {
    super(scope, id);
    if (!props || typeof props !== 'object' || !isBalancer(props.balancer)) {
      // Without its balancer the VIP cannot join the tree that validation walks: refused at once.
      throw new SpecError([
        { path: this.node.path, field: 'balancer', value: props?.balancer, message: 'is required and must be a Balancer or BalancerPair construct' },
      ]);
    }
    ({ props: this.props, issues: this.propIssues } = knownProps(
      props,
      ['balancer', 'name', 'ip', 'port', 'protocol', 'mode', 'algorithm', 'flowTimeoutSec', 'mssClamp', 'hashTableSize', 'healthCheck'],
      this.node.path,
    ));
    brand(this, 'vip');
    this.balancer = props.balancer;
    this.balancer._addVip(this);
    // The balancer's list holds this VIP's own issues and the cross-object ones (clashes, no backends, …).
    reportIssues(this, () => this.balancer._issues());
  }

  /** @internal */
  get _ip(): unknown {
    return this.props.ip;
  }

  get backends(): readonly IBackend[] {
    return this.backendList;
  }

  /** Adds a backend to this VIP; `id` becomes the backend's name. */
  addBackend(id: string, props: BackendProps): Backend {
    return new Backend(this, id, props);
  }

  /** @internal */
  _addBackend(backend: IBackend): void {
    this.backendList.push(backend);
    this.parsed = undefined;
    this.balancer._invalidate();
    // a host's services come from this VIP's parse, which the new backend can change (see BackendHost.services)
    for (const b of this.backendList) b.host?._invalidate();
  }

  /** @internal The VIP's own fields and its backends, parsed with the synth-time schemas. */
  _parse(): { value?: VipSpec; issues: SpecIssue[] } {
    this.parsed ??= this.parseNow();
    return this.parsed;
  }

  private parseNow(): { value?: VipSpec; issues: SpecIssue[] } {
    const { balancer: _balancer, name, ...rest } = this.props;
    const issues: SpecIssue[] = [...this.propIssues];
    const backends = this.backendList.map((b) => b._parse());
    for (const b of backends) pushAll(issues, b.issues);
    const own = parseCandidate(
      SynthSchemas.VipSpecSchema,
      defined({ ...rest, path: this.node.path, name: name ?? this.node.id, backends: [] }),
      this.node.path,
    );
    pushAll(issues, own.issues);
    if (!own.value) return { issues };
    // With some backends at fault, the VIP still goes through the cross-object checks with the backends that
    // parsed, so one synth lists every problem (unless none parsed: that is not an empty VIP).
    const parsedBackends = backends.flatMap((b) => (b.value ? [b.value] : []));
    if (parsedBackends.length === 0 && backends.length > 0) return { issues };
    return { value: { ...own.value, backends: parsedBackends }, issues };
  }
}
