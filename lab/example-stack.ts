import { LocalBackend, TerraformStack } from 'cdktf';
import { Construct } from 'constructs';
import { Algorithm, Balancer, BalancerPair, BackendHost, DsrVip, HealthCheck, IBalancer } from '../constructs';
import type { Inventory, InventoryHost } from './inventory';

export interface ExampleOptions {
  /**
   * Backend weights of the web VIP: by position among the stack's backend hosts, or by host name. A host without
   * a weight is not a backend of `web` (it still serves `dns` and `any`).
   * @default [1, 2, 3]
   */
  readonly weights?: readonly number[] | Readonly<Record<string, number>>;
  /**
   * Names of the inventory backends this stack configures, in order.
   * @default - every backend in the inventory
   */
  readonly backends?: readonly string[];
  /**
   * The web VIP's health check.
   * @default - none
   */
  readonly healthCheck?: HealthCheck;
  /**
   * The web VIP's algorithm.
   * @default 'weighted-round-robin'
   */
  readonly algorithm?: Algorithm;
  /**
   * The balancer's statistics textfile for node_exporter (see BalancerProps.statsTextfile).
   * @default - none
   */
  readonly statsTextfile?: string | boolean;
  /**
   * Seconds between two writes of the statistics textfile.
   * @default - the Balancer's default, 15
   */
  readonly statsIntervalSec?: number;
  /**
   * A balancer pair of the inventory's balancer (primary) and its `secondary`, with these VRRP settings; the VIPs
   * attach to the pair.
   * @default - one balancer
   */
  readonly pair?: { readonly virtualRouterId?: number; readonly advertIntervalSec?: number; readonly preempt?: boolean };
}

/** Parses ExampleOptions from JSON (main.ts reads TULA_DSR_EXAMPLE); undefined or empty gives the defaults. */
export function parseExampleOptions(json: string | undefined): ExampleOptions {
  if (!json || !json.trim()) return {};
  const value = JSON.parse(json) as unknown;
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new Error(`TULA_DSR_EXAMPLE: ${json} is not a JSON object like {"weights":{"web1":1},"backends":["web1"]}`);
  return value as ExampleOptions;
}

function ssh(inventory: Inventory, host: InventoryHost) {
  return { host: host.sshHost, port: host.sshPort, user: inventory.user, hostKey: host.hostKey, privateKeyPath: inventory.privateKeyPath };
}

/**
 * The example deployment: an L2 VIP for HTTP with weighted round robin over the backends, a UDP VIP, and an
 * all-ports VIP with consistent hashing.
 */
export class ExampleStack extends TerraformStack {
  readonly balancer: Balancer;
  /** With the `pair` option: the secondary member and the pair. */
  readonly secondary?: Balancer;
  readonly pair?: BalancerPair;
  readonly hosts: BackendHost[];
  readonly web: DsrVip;

  constructor(scope: Construct, id: string, inventory: Inventory, options: ExampleOptions = {}) {
    super(scope, id);
    // cdktf's default state path is absolute (the synth machine's cwd); a relative one keeps the plan portable.
    new LocalBackend(this, { path: '../../../terraform.dsr.tfstate' });
    const balancer = (lb: NonNullable<Inventory['secondary']>) =>
      new Balancer(this, lb.name, {
        ssh: ssh(inventory, lb),
        interface: lb.interface,
        address: lb.address,
        subnet: lb.subnet,
        ...(options.statsTextfile !== undefined && { statsTextfile: options.statsTextfile }),
        ...(options.statsIntervalSec !== undefined && { statsIntervalSec: options.statsIntervalSec }),
      });
    this.balancer = balancer(inventory.balancer);
    let target: IBalancer = this.balancer;
    if (options.pair) {
      if (!inventory.secondary) throw new Error('example stack: the pair option needs a secondary balancer in the inventory (createL2Lab({ pair: true }))');
      this.secondary = balancer(inventory.secondary);
      const { virtualRouterId = 51, ...vrrp } = options.pair;
      target = this.pair = new BalancerPair(this, 'edge', { primary: this.balancer, secondary: this.secondary, vrrp: { virtualRouterId, ...vrrp } });
    }
    const chosen = (options.backends ?? inventory.backends.map((b) => b.name)).map((name) => {
      const found = inventory.backends.find((b) => b.name === name);
      if (!found)
        throw new Error(`example stack: backend ${JSON.stringify(name)} is not in the inventory; it has ${inventory.backends.map((b) => b.name).join(', ')}`);
      return found;
    });
    this.hosts = chosen.map((b) => new BackendHost(this, b.name, { ssh: ssh(inventory, b), address: b.address }));
    const weights = options.weights ?? [1, 2, 3];
    const weightOf = (host: BackendHost, i: number): number | undefined =>
      Array.isArray(weights) ? (weights as readonly number[])[i] : (weights as Readonly<Record<string, number>>)[host.node.id];

    this.web = new DsrVip(this, 'web', {
      balancer: target,
      ip: inventory.vips.web,
      port: 80,
      algorithm: options.algorithm ?? 'weighted-round-robin',
      ...(options.healthCheck && { healthCheck: options.healthCheck }),
    });
    this.hosts.forEach((host, i) => {
      const weight = weightOf(host, i);
      if (weight !== undefined) this.web.addBackend(host.node.id, { host, weight });
    });
    const dns = new DsrVip(this, 'dns', {
      balancer: target,
      ip: inventory.vips.dns,
      port: 5353,
      protocol: 'udp',
      algorithm: 'round-robin',
      flowTimeoutSec: 30,
    });
    const any = new DsrVip(this, 'any', { balancer: target, ip: inventory.vips.any, port: '*', algorithm: 'consistent-hash' });
    for (const host of this.hosts) {
      dns.addBackend(host.node.id, { host });
      any.addBackend(host.node.id, { host });
    }
  }
}
