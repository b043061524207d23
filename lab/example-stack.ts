import { TerraformStack } from 'cdktf';
import { Construct } from 'constructs';
import { Balancer, BackendHost, DsrVip } from '../constructs';
import type { Inventory, InventoryHost } from './inventory';

export interface ExampleOptions {
  /** Backend weights of the web VIP, by backend index. @default [1, 2, 3] */
  readonly weights?: readonly number[];
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
  readonly hosts: BackendHost[];
  readonly web: DsrVip;

  constructor(scope: Construct, id: string, inventory: Inventory, options: ExampleOptions = {}) {
    super(scope, id);
    const lb = inventory.balancer;
    this.balancer = new Balancer(this, lb.name, { ssh: ssh(inventory, lb), interface: lb.interface, address: lb.address, subnet: lb.subnet });
    this.hosts = inventory.backends.map((b) => new BackendHost(this, b.name, { ssh: ssh(inventory, b), address: b.address }));
    const weights = options.weights ?? [1, 2, 3];

    this.web = new DsrVip(this, 'web', { balancer: this.balancer, ip: inventory.vips.web, port: 80, algorithm: 'weighted-round-robin' });
    this.hosts.forEach((host, i) => {
      if (weights[i] !== undefined) this.web.addBackend(host.node.id, { host, weight: weights[i] });
    });
    const dns = new DsrVip(this, 'dns', { balancer: this.balancer, ip: inventory.vips.dns, port: 5353, protocol: 'udp', algorithm: 'round-robin', flowTimeoutSec: 30 });
    const any = new DsrVip(this, 'any', { balancer: this.balancer, ip: inventory.vips.any, port: '*', algorithm: 'consistent-hash' });
    for (const host of this.hosts) {
      dns.addBackend(host.node.id, { host });
      any.addBackend(host.node.id, { host });
    }
  }
}
