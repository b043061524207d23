import { readFileSync } from 'node:fs';

/**
 * What a lab (or any set of real hosts) tells the example stack: where each host's sshd listens and which host
 * key it must present. The L2 lab writes one of these; `main.ts` reads it from TULA_DSR_INVENTORY.
 */
export interface InventoryHost {
  readonly name: string;
  /** Address the controller uses for SSH. */
  readonly sshHost: string;
  readonly sshPort: number;
  /** The host's own address on the data segment. */
  readonly address: string;
  readonly hostKey: string;
}

export interface Inventory {
  readonly privateKeyPath?: string;
  readonly user?: string;
  readonly balancer: InventoryHost & { readonly interface: string; readonly subnet: string };
  /** A second balancer: with the example's `pair` option, the secondary member of a balancer pair. */
  readonly secondary?: InventoryHost & { readonly interface: string; readonly subnet: string };
  readonly backends: readonly InventoryHost[];
  /** VIP addresses the example stack may use, inside the lab's data subnet. */
  readonly vips: { readonly web: string; readonly dns: string; readonly any: string };
}

const PLACEHOLDER_KEY = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

/** The built-in target: the namespace lab's default addresses. Synth works without the lab; apply needs it. */
export const DEFAULT_INVENTORY: Inventory = {
  privateKeyPath: '.lab/id_ed25519',
  balancer: { name: 'lb1', sshHost: '10.213.1.2', sshPort: 22, address: '10.213.1.2', hostKey: PLACEHOLDER_KEY, interface: 'eth0', subnet: '10.213.1.0/24' },
  backends: [1, 2, 3].map((i) => ({ name: `web${i}`, sshHost: `10.213.1.${10 + i}`, sshPort: 22, address: `10.213.1.${10 + i}`, hostKey: PLACEHOLDER_KEY })),
  vips: { web: '10.213.1.100', dns: '10.213.1.101', any: '10.213.1.102' },
};

export function loadInventory(path: string | undefined): Inventory {
  return path ? (JSON.parse(readFileSync(path, 'utf8')) as Inventory) : DEFAULT_INVENTORY;
}
