/**
 * The namespace lab: a switch namespace with a bridge, one namespace per host with `eth0` on that bridge, and a
 * controller veth from the root namespace onto the same bridge.
 *
 *             root namespace (node, ssh client)
 *                  tula<id>  10.213.N.254/24
 *                      │
 *   tula-<id>-switch:  ctl ── br0 ── p-<host> ... (one port per host)
 *                                      │
 *   tula-<id>-<host>:                eth0 10.213.N.<i>/24, sshd on :22
 *
 * One subnet carries both SSH and data traffic: the controller is just another station on the bridge. N is
 * picked per lab (see subnet.ts), so parallel labs do not collide. IPv6 is off on the controller veth, so the root
 * namespace sends nothing onto the lab bridge by itself.
 *
 * createLab's steps live by concern: lab-props.ts (checks before anything exists), lifecycle.ts (names, lab.json,
 * teardown and reaping), lab-network.ts (namespaces, bridge, veths), lab-hosts.ts (keys, users, anchors, sshd).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { ExecResult, BackgroundProcess } from './exec';
import { checkLabProps } from './lab-props';
import { LabNames, LabResources, labNames, reapStaleLabs } from './lifecycle';
import { createNamespaces, labAddresses, wireNetwork } from './lab-network';
import { generateLabKeys, startHosts } from './lab-hosts';
import { Subnet, claimSubnet, parseLabSubnet } from './subnet';
import type { KeyPair } from './sshd';
import type { LabUserSpec } from './users';
import type { SshTarget } from '../agent/ssh/target';

export type { LabUserSpec } from './users';
export { reapStaleLabs } from './lifecycle';

export interface LabHostSpec {
  /** `[a-z][a-z0-9]*`, at most 12 characters; becomes the namespace suffix and the host name. */
  readonly name: string;
  /** Last octet of the host's address, 1–253 (254 is the controller). Default: its position in `hosts`, from 1. */
  readonly octet?: number;
  /** Run sshd on this host (default true). A client namespace may not need it. */
  readonly sshd?: boolean;
  /** Extra users on this host only. */
  readonly users?: readonly LabUserSpec[];
}

export interface LabProps {
  readonly hosts: readonly LabHostSpec[];
  /** A /24 inside 10.213.0.0/16; default: a free one. */
  readonly subnet?: string;
  /** Extra users on every host. */
  readonly users?: readonly LabUserSpec[];
}

export interface LabHost {
  readonly name: string;
  readonly netns: string;
  readonly ip: string;
  /** The host's address in the lab's IPv6 /64 (`Lab.subnet6`). */
  readonly ip6: string;
  readonly sshPort: number;
  /** `ssh-ed25519 AAAA…` (no comment). */
  readonly hostKeyLine: string;
  /** `SHA256:…`, as `ssh-keygen -lf` prints it. */
  readonly hostKeyFingerprint: string;
  readonly mac: string;
  /** PID of the process holding the host's mount and UTS namespaces. */
  readonly anchorPid: number;
  /** Runs argv, or a sh script, as root inside the host (its network, mount and UTS namespaces). */
  exec(cmd: readonly string[] | string, input?: string): Promise<ExecResult>;
  /**
   * Starts a background process (an HTTP server, tcpdump -U, ...) inside the host. The lab keeps its PID and
   * kills it at teardown at the latest; `stop()` it earlier if the test needs to.
   */
  spawn(argv: readonly string[]): BackgroundProcess;
  /** Path in the root namespace under which the host's file `p` can be read (via /proc/<anchor>/root). */
  path(p: string): string;
  stopSshd(): Promise<void>;
  startSshd(): Promise<void>;
  sshdRunning(): boolean;
  /** PID of the host's listening sshd (undefined when it has none or it is stopped): the bench counts the CPU of its sessions from it. */
  sshdPid(): number | undefined;
  addUser(user: LabUserSpec): Promise<void>;
  /** An SSH target for this host with the lab's client key and the pinned host key. */
  target(overrides?: Partial<SshTarget>): SshTarget;
  /** argv for the system `ssh` client (no config file, lab key, lab known_hosts); append the remote command. */
  sshArgv(user?: string): string[];
}

export interface Lab {
  readonly id: string;
  readonly dir: string;
  readonly subnet: string;
  /** The lab's IPv6 segment (a ULA /64); the controller has no IPv6 address on it. */
  readonly subnet6: string;
  readonly controllerIp: string;
  /** Root-namespace end of the controller veth. */
  readonly controllerIf: string;
  readonly switchNetns: string;
  readonly clientKeyPath: string;
  readonly clientPublicKey: string;
  /** known_hosts with a plain `<ip> ssh-ed25519 …` line per sshd host. */
  readonly knownHostsPath: string;
  readonly hosts: Readonly<Record<string, LabHost>>;
  /** All namespaces of this lab (switch first). */
  readonly netnsNames: readonly string[];
  /** Stops every process, deletes namespaces, the veth and the lab dir. Idempotent. */
  teardown(): Promise<void>;
}

/**
 * Builds a lab: one step per part of the picture above. Whatever fails, everything created so far is removed again
 * before the error reaches the caller.
 */
export async function createLab(props: LabProps): Promise<Lab> {
  const machineUsers = checkLabProps(props);
  // a run that was killed leaves its namespaces, veth and subnet claim behind; free them before taking new ones
  await reapStaleLabs();
  const names = labNames(randomBytes(3).toString('hex'), props.hosts);
  const resources = new LabResources(names);
  resources.open();
  try {
    const subnet = await claimLabSubnet(resources, props.subnet);
    await createNamespaces(names);
    const addresses = labAddresses(subnet, props.hosts);
    await wireNetwork(names, props.hosts, addresses);
    const keys = await generateLabKeys(names, props.hosts);
    const hosts = await startHosts(props, { names, resources, keys, addresses, machineUsers });
    writeKnownHosts(names.knownHostsPath, hosts);
    return labHandle(names, resources, subnet, keys.client, hosts);
  } catch (e) {
    throw await afterTeardown(resources, e as Error);
  }
}

/** A free /24 (or the one asked for), recorded in lab.json as soon as it is claimed. */
async function claimLabSubnet(resources: LabResources, requested: string | undefined): Promise<Subnet> {
  const subnet = await claimSubnet(resources.names.id, requested === undefined ? undefined : parseLabSubnet(requested));
  resources.recordSubnet(subnet);
  return subnet;
}

/** known_hosts with a plain `<ip> ssh-ed25519 …` line per sshd host, for the system `ssh` client (sshArgv). */
function writeKnownHosts(path: string, hosts: Readonly<Record<string, LabHost>>): void {
  writeFileSync(
    path,
    Object.values(hosts)
      .filter((h) => h.hostKeyLine !== '')
      .map((h) => `${h.ip} ${h.hostKeyLine}\n`)
      .join(''),
  );
}

function labHandle(names: LabNames, resources: LabResources, subnet: Subnet, clientKey: KeyPair, hosts: Record<string, LabHost>): Lab {
  return {
    id: names.id,
    dir: names.dir,
    subnet: subnet.cidr,
    subnet6: subnet.ipv6Cidr,
    controllerIp: subnet.address(254),
    controllerIf: names.rootIf,
    switchNetns: names.switchNetns,
    clientKeyPath: clientKey.privatePath,
    clientPublicKey: clientKey.publicLine,
    knownHostsPath: names.knownHostsPath,
    hosts,
    netnsNames: names.netnsNames,
    teardown: () => resources.teardown(),
  };
}

/** Removes what a failed createLab created; the original error is the one to report, with any cleanup failure added. */
async function afterTeardown(resources: LabResources, error: Error): Promise<Error> {
  try {
    await resources.teardown();
  } catch (t) {
    error.message += `\n(and cleaning up after that failed too: ${(t as Error).message})`;
  }
  return error;
}
