/**
 * The L2 DSR lab: on top of the namespace lab (topology.ts), hosts `client`, `lb` (and `lb2` for a pair) and
 * `web1..webN`, with
 *
 *  - on each backend, an HTTP server on ports 80 and 8080 and a UDP echo on 5353, bound to 0.0.0.0 (the VIPs
 *    appear on lo only once tula-dsr applies), each naming the backend (see scripts.ts);
 *  - an inventory (lab/inventory.ts) in the lab dir: SSH address and port, the pinned host-key fingerprint, the
 *    lab's client key, each host's address and the VIPs; `main.ts` reads it from TULA_DSR_INVENTORY.
 *
 * Addresses in the lab's /24: client .1, lb .2, lb2 .3, webN .(10+N), VIPs web .100, dns .101, any .102, controller .254.
 * The servers are started with the lab's `spawn()`, so teardown stops them with everything else.
 */
import { writeFileSync } from 'node:fs';
import { createLab, Lab, LabHost, LabHostSpec } from '../topology';
import { waitFor, BackgroundProcess } from '../exec';
import type { Inventory, InventoryHost } from '../inventory';
import { BACKEND_SERVER_PY } from './scripts';

export const HTTP_PORTS = [80, 8080] as const;
export const UDP_PORT = 5353;
export const VIP_OCTETS = { web: 100, dns: 101, any: 102 } as const;

export interface L2LabOptions {
  /** Backend hosts web1..webN (default 3). */
  readonly backends?: number;
  /** A /24 inside 10.213.0.0/16 (default: a free one). */
  readonly subnet?: string;
  /** A second balancer host `lb2` (.3), the inventory's `secondary`, for a balancer pair (default false). */
  readonly pair?: boolean;
}

export interface L2Lab {
  readonly lab: Lab;
  readonly client: LabHost;
  readonly lb: LabHost;
  /** The second balancer, with `pair`. */
  readonly lb2?: LabHost;
  readonly backends: readonly LabHost[];
  readonly vips: { readonly web: string; readonly dns: string; readonly any: string };
  readonly inventory: Inventory;
  /** The inventory as JSON, inside the lab dir (removed at teardown). */
  readonly inventoryPath: string;
  /** python3 inside the hosts (the machine's, not a version manager's shim under /root). */
  readonly python: string;
  /** The backend servers' processes by backend name; their stdout logs each request (see scripts.ts). */
  readonly servers: Readonly<Record<string, BackgroundProcess>>;
  /** Stops a backend's servers (HTTP and UDP), as a crashed service would be: its host stays up. */
  stopServer(name: string): Promise<void>;
  /** Starts a backend's servers again (after stopServer); resolves once they listen. */
  startServer(name: string): Promise<void>;
  /** Stops every server and process, deletes every namespace and the lab dir. Idempotent. */
  teardown(): Promise<void>;
}

/** Throws a one-line explanation unless this process can build the lab. */
export function assertL2Prerequisites(): void {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error('the L2 lab needs root: it creates network namespaces, runs sshd and loads nft rules; run it as root (sudo npm run demo)');
  }
}

export async function createL2Lab(options: L2LabOptions = {}): Promise<L2Lab> {
  assertL2Prerequisites();
  const count = options.backends ?? 3;
  if (!Number.isInteger(count) || count < 1 || count > 50) throw new Error(`backends: ${count} is not allowed: use 1 to 50`);
  const names = Array.from({ length: count }, (_, i) => `web${i + 1}`);
  const hosts: LabHostSpec[] = [
    { name: 'client', octet: 1, sshd: false },
    { name: 'lb', octet: 2 },
    ...(options.pair ? [{ name: 'lb2', octet: 3 }] : []),
    ...names.map((name, i) => ({ name, octet: 11 + i })),
  ];
  // createLab refuses namespaces that exist already (names carry a fresh random lab id) and cleans up after itself
  const lab = await createLab({ hosts, subnet: options.subnet });
  try {
    const client = lab.hosts.client;
    const lb = lab.hosts.lb;
    const lb2 = options.pair ? lab.hosts.lb2 : undefined;
    const backends = names.map((n) => lab.hosts[n]);
    const python = await findPython(client);
    const base = lab.subnet.replace(/0\/24$/, '');
    const vips = { web: `${base}${VIP_OCTETS.web}`, dns: `${base}${VIP_OCTETS.dns}`, any: `${base}${VIP_OCTETS.any}` };

    const servers: Record<string, BackgroundProcess> = {};
    const startServer = async (name: string) => {
      const b = backends.find((h) => h.name === name);
      if (!b) throw new Error(`startServer: no backend ${name}`);
      if (servers[name]?.isRunning()) throw new Error(`startServer: the servers of ${name} are running`);
      const p = b.spawn([python, '-u', '-c', BACKEND_SERVER_PY, b.name, HTTP_PORTS.join(','), String(UDP_PORT)]);
      servers[b.name] = p;
      const ready = await waitFor(() => p.stdoutText().includes('READY') || !p.isRunning(), 10_000, 20);
      if (!ready || !p.isRunning()) throw new Error(`lab host ${b.name}: the HTTP/UDP servers did not start:\n${p.stderrText().trim()}`);
    };
    const stopServer = async (name: string) => {
      if (!servers[name]) throw new Error(`stopServer: no backend ${name}`);
      await servers[name].stop('SIGKILL');
    };
    await Promise.all(backends.map((b) => startServer(b.name)));

    const inv = (h: LabHost): InventoryHost => ({ name: h.name, sshHost: h.ip, sshPort: h.sshPort, address: h.ip, hostKey: h.hostKeyFingerprint });
    const inventory: Inventory = {
      privateKeyPath: lab.clientKeyPath,
      user: 'root',
      balancer: { ...inv(lb), interface: 'eth0', subnet: lab.subnet },
      ...(lb2 && { secondary: { ...inv(lb2), interface: 'eth0', subnet: lab.subnet } }),
      backends: backends.map(inv),
      vips,
    };
    const inventoryPath = `${lab.dir}/inventory.json`;
    writeFileSync(inventoryPath, JSON.stringify(inventory, null, 2) + '\n');
    return { lab, client, lb, lb2, backends, vips, inventory, inventoryPath, python, servers, stopServer, startServer, teardown: () => lab.teardown() };
  } catch (e) {
    await lab.teardown().catch((t: Error) => ((e as Error).message += `\n(and tearing the lab down failed too: ${t.message})`));
    throw e;
  }
}

/** The machine's python3 as seen inside a host: /root there is empty, so a version manager's shims are gone. */
async function findPython(host: LabHost): Promise<string> {
  const r = await host.exec('PATH=/usr/local/bin:/usr/bin:/bin command -v python3');
  const path = r.stdout.trim();
  if (r.code !== 0 || !path.startsWith('/')) throw new Error('the L2 lab needs python3 on the machine (apt-get install python3) for its HTTP and UDP servers');
  return path;
}
