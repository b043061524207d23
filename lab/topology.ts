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
 */
import { mkdirSync, rmSync, writeFileSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { execFile, execOk, shOk, ExecResult, BackgroundProcess, spawnBackground } from './exec';
import { LAB_PREFIX, listNetns, addNetns, deleteNetns, killNetnsProcesses, startAnchor, execInHost, enterHostArgv, Anchor } from './netns';
import { generateKeyPair, renderSshdProvision, startSshd, KeyPair } from './sshd';
import { LabUserSpec, renderAddUser, validateUserName } from './users';
import { LAB_ROOT, Subnet, claimSubnet, releaseSubnet, parseLabSubnet, ProcessIdentity, selfIdentity, isAlive } from './subnet';
import type { SshTarget } from '../agent/ssh/target';

export type { LabUserSpec } from './users';

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

const HOST_NAME = /^[a-z][a-z0-9]{0,11}$/;
const FIRST_USER_UID = 61000;

interface LabState {
  readonly id: string;
  readonly owner: ProcessIdentity;
  readonly netns: readonly string[];
  readonly rootIf: string;
  readonly subnetOctet: number | null;
}

/** Throws unless we run as root with the tools the lab needs. */
export function assertLabPrerequisites(needSudo: boolean): void {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error('the lab needs root (network namespaces, sshd): run as root');
  }
  const tools = ['/usr/sbin/sshd', 'ssh-keygen', 'ip', 'nsenter', 'unshare', 'setpriv'];
  if (needSudo) tools.push('sudo');
  const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length > 0) {
    throw new Error(`the lab needs ${missing.join(', ')}: apt-get install openssh-server openssh-client iproute2 util-linux sudo`);
  }
}

export async function createLab(props: LabProps): Promise<Lab> {
  const allUsers = [...(props.users ?? []), ...props.hosts.flatMap((h) => h.users ?? [])];
  assertLabPrerequisites(allUsers.some((u) => u.sudo));
  validateHosts(props.hosts);
  const machineUsers = new Set(readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':')[0]));
  for (const u of allUsers) validateUserName(u.name, machineUsers);
  await reapStaleLabs();

  const id = randomBytes(3).toString('hex');
  const dir = `${LAB_ROOT}/${id}`;
  const switchNetns = `${LAB_PREFIX}-${id}-switch`;
  const rootIf = `${LAB_PREFIX}${id}`;
  const hostNetns = (name: string) => `${LAB_PREFIX}-${id}-${name}`;
  const netnsNames = [switchNetns, ...props.hosts.map((h) => hostNetns(h.name))];

  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let subnet: Subnet | undefined;
  const state: { anchors: Anchor[]; sshds: Map<string, BackgroundProcess>; spawned: BackgroundProcess[] } = {
    anchors: [],
    sshds: new Map(),
    spawned: [],
  };
  const writeState = () => {
    const s: LabState = { id, owner: selfIdentity(), netns: netnsNames, rootIf, subnetOctet: subnet?.octet ?? null };
    writeFileSync(`${dir}/lab.json`, JSON.stringify(s, null, 2));
  };
  writeState();
  const exitHandler = () => teardownSync({ id, owner: selfIdentity(), netns: netnsNames, rootIf, subnetOctet: subnet?.octet ?? null }, dir);
  process.once('exit', exitHandler);

  let tornDown: Promise<void> | undefined;
  const teardown = (): Promise<void> => {
    tornDown ??= (async () => {
      const errors: string[] = [];
      const attempt = async (what: string, f: () => Promise<unknown>) => {
        try {
          await f();
        } catch (e) {
          errors.push(`${what}: ${(e as Error).message}`);
        }
      };
      await Promise.all(state.spawned.map((p) => attempt('stop spawned process', () => p.stop('SIGTERM', 1000))));
      await Promise.all([...state.sshds.values()].map((p) => attempt('stop sshd', () => p.stop('SIGTERM', 1000))));
      await Promise.all(state.anchors.map((a) => attempt('stop anchor', () => a.process.stop('SIGKILL'))));
      await Promise.all(netnsNames.map((n) => attempt(`kill processes in ${n}`, () => killNetnsProcesses(n))));
      await attempt(`delete ${rootIf}`, () => deleteLinkIfPresent(rootIf));
      await Promise.all(netnsNames.map((n) => attempt(`delete ${n}`, () => deleteNetns(n))));
      if (subnet) releaseSubnet(subnet.octet, id);
      await attempt(`remove ${dir}`, async () => rmSync(dir, { recursive: true, force: true }));
      process.removeListener('exit', exitHandler);
      if (errors.length > 0) throw new Error(`lab ${id} teardown was incomplete:\n${errors.join('\n')}`);
    })();
    return tornDown;
  };

  try {
    subnet = await claimSubnet(id, props.subnet === undefined ? undefined : parseLabSubnet(props.subnet));
    writeState();
    const sn = subnet;
    const existing = await listNetns();
    const clash = netnsNames.filter((n) => existing.includes(n));
    if (clash.length > 0) throw new Error(`network namespaces exist already, not created by this lab: ${clash.join(', ')}`);
    for (const n of netnsNames) await addNetns(n);

    const controllerIp = sn.address(254);
    const hostIps = hostOctets(props.hosts).map((o) => sn.address(o));
    await shOk(
      [
        `ip -n ${switchNetns} link set lo up`,
        `ip -n ${switchNetns} link add br0 type bridge`,
        // bridge netfilter is built in and on: frames crossing the bridge must not meet the machine's iptables
        `ip netns exec ${switchNetns} sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables /proc/sys/net/bridge/bridge-nf-call-arptables; do [ ! -e $f ] || echo 0 > $f; done'`,
        `ip -n ${switchNetns} link set br0 up`,
        ...props.hosts.flatMap((h, i) => [
          `ip -n ${hostNetns(h.name)} link add eth0 type veth peer name p-${h.name} netns ${switchNetns}`,
          `ip -n ${switchNetns} link set p-${h.name} master br0 up`,
          `ip -n ${hostNetns(h.name)} link set lo up`,
          `ip -n ${hostNetns(h.name)} addr add ${hostIps[i]}/${sn.prefixLength} dev eth0`,
          `ip -n ${hostNetns(h.name)} link set eth0 up`,
        ]),
        `ip link add ${rootIf} type veth peer name ctl netns ${switchNetns}`,
        `[ ! -e /proc/sys/net/ipv6/conf/${rootIf}/disable_ipv6 ] || echo 1 > /proc/sys/net/ipv6/conf/${rootIf}/disable_ipv6`,
        `ip -n ${switchNetns} link set ctl master br0 up`,
        `ip addr add ${controllerIp}/${sn.prefixLength} dev ${rootIf}`,
        `ip link set ${rootIf} up`,
      ].join('\n'),
    );

    const clientKey = await generateKeyPair(`${dir}/client_ed25519`, `tula-lab-${id}`);
    const sshHosts = props.hosts.filter((h) => h.sshd !== false);
    const hostKeys = new Map<string, KeyPair>();
    await Promise.all(
      sshHosts.map(async (h) => {
        mkdirSync(`${dir}/hosts/${h.name}`, { recursive: true });
        hostKeys.set(h.name, await generateKeyPair(`${dir}/hosts/${h.name}/ssh_host_ed25519_key`, `root@${h.name}`));
      }),
    );
    const fingerprints = new Map<string, string>();
    await Promise.all(
      sshHosts.map(async (h) => {
        const r = await execOk(['ssh-keygen', '-l', '-E', 'sha256', '-f', `${dir}/hosts/${h.name}/ssh_host_ed25519_key.pub`]);
        fingerprints.set(h.name, r.stdout.split(' ')[1]);
      }),
    );

    let nextUid = FIRST_USER_UID;
    const takenUids = new Set(readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => Number(l.split(':')[2])));
    const allocUid = () => {
      while (takenUids.has(nextUid)) nextUid++;
      takenUids.add(nextUid);
      return nextUid;
    };
    const uidOf = new Map<string, number>();
    const uidFor = (user: string) => {
      if (!uidOf.has(user)) uidOf.set(user, allocUid());
      return uidOf.get(user)!;
    };
    const addUserScript = (u: LabUserSpec) =>
      renderAddUser({ ...u, uid: uidFor(u.name), authorizedKey: clientKey.publicLine });

    const hosts: Record<string, LabHost> = {};
    await Promise.all(
      props.hosts.map(async (h, i) => {
        mkdirSync(`${dir}/hosts/${h.name}/rw`, { recursive: true });
        const ip = hostIps[i];
        const hostKey = hostKeys.get(h.name);
        const users = [...(props.users ?? []), ...(h.users ?? [])];
        const provision = [
          hostKey ? renderSshdProvision({ hostname: h.name, listenAddress: ip, port: 22, hostKey, authorizedKey: clientKey.publicLine }) : '',
          ...users.map(addUserScript),
        ].join('\n');
        const anchor = await startAnchor({ netns: hostNetns(h.name), hostname: h.name, rwDir: `${dir}/hosts/${h.name}/rw`, provision });
        state.anchors.push(anchor);
        const macOut = await execOk(['ip', '-n', hostNetns(h.name), '-j', 'link', 'show', 'dev', 'eth0']);
        const mac = (JSON.parse(macOut.stdout) as { address: string }[])[0].address;
        const start = async () => {
          if (!hostKey) throw new Error(`lab host ${h.name} has no sshd (sshd: false)`);
          if (state.sshds.get(h.name)?.isRunning()) return;
          state.sshds.set(h.name, await startSshd(anchor.pid, h.name));
        };
        const hostKeyLine = hostKey ? hostKey.publicLine.split(' ').slice(0, 2).join(' ') : '';
        const host: LabHost = {
          name: h.name,
          netns: hostNetns(h.name),
          ip,
          sshPort: 22,
          hostKeyLine,
          hostKeyFingerprint: fingerprints.get(h.name) ?? '',
          mac,
          anchorPid: anchor.pid,
          exec: (cmd, input) => execInHost(anchor.pid, cmd, input),
          spawn: (argv) => {
            if (tornDown) throw new Error(`lab ${id} is torn down`);
            const p = spawnBackground(enterHostArgv(anchor.pid, ['setpriv', '--pdeathsig', 'KILL', ...argv]));
            state.spawned.push(p);
            return p;
          },
          path: (p) => `/proc/${anchor.pid}/root${p.startsWith('/') ? '' : '/'}${p}`,
          startSshd: start,
          stopSshd: async () => {
            await state.sshds.get(h.name)?.stop('SIGTERM', 1000);
          },
          sshdRunning: () => state.sshds.get(h.name)?.isRunning() ?? false,
          addUser: async (u) => {
            validateUserName(u.name, machineUsers);
            if (u.sudo) assertLabPrerequisites(true);
            const r = await execInHost(anchor.pid, ['sh', '-ec', addUserScript(u)]);
            if (r.code !== 0) throw new Error(`lab host ${h.name}: adding user ${u.name} failed:\n${r.stderr.trim()}`);
          },
          target: (overrides = {}) => ({
            host: ip,
            port: 22,
            user: 'root',
            privateKeyPath: clientKey.privatePath,
            hostKey: fingerprints.get(h.name),
            ...overrides,
          }),
          sshArgv: (user = 'root') => [
            'ssh', '-F', '/dev/null', '-i', clientKey.privatePath,
            '-o', `UserKnownHostsFile=${dir}/known_hosts`, '-o', 'StrictHostKeyChecking=yes',
            '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=5',
            '-l', user, ip,
          ],
        };
        if (hostKey) await start();
        hosts[h.name] = host;
      }),
    );

    const knownHostsPath = `${dir}/known_hosts`;
    writeFileSync(
      knownHostsPath,
      Object.values(hosts)
        .filter((h) => h.hostKeyLine !== '')
        .map((h) => `${h.ip} ${h.hostKeyLine}\n`)
        .join(''),
    );

    return {
      id,
      dir,
      subnet: sn.cidr,
      controllerIp,
      controllerIf: rootIf,
      switchNetns,
      clientKeyPath: clientKey.privatePath,
      clientPublicKey: clientKey.publicLine,
      knownHostsPath,
      hosts,
      netnsNames,
      teardown,
    };
  } catch (e) {
    try {
      await teardown();
    } catch (t) {
      (e as Error).message += `\n(and cleaning up after that failed too: ${(t as Error).message})`;
    }
    throw e;
  }
}

function validateHosts(hosts: readonly LabHostSpec[]): void {
  if (hosts.length === 0) throw new Error('a lab needs at least one host');
  if (hosts.length > 253) throw new Error(`a lab holds at most 253 hosts, got ${hosts.length}`);
  const seen = new Set<string>();
  for (const h of hosts) {
    if (!HOST_NAME.test(h.name) || h.name === 'switch') {
      throw new Error(`lab host name "${h.name}" is invalid: use [a-z][a-z0-9]*, at most 12 characters, not "switch"`);
    }
    if (seen.has(h.name)) throw new Error(`lab host name "${h.name}" is used twice`);
    seen.add(h.name);
    if (h.octet !== undefined && (!Number.isInteger(h.octet) || h.octet < 1 || h.octet > 253)) {
      throw new Error(`lab host ${h.name}: octet ${h.octet} is invalid: use 1 to 253 (254 is the controller)`);
    }
  }
  const octets = hosts.map((h) => h.octet).filter((o) => o !== undefined);
  const dup = octets.find((o, i) => octets.indexOf(o) !== i);
  if (dup !== undefined) throw new Error(`lab host octet ${dup} is used twice`);
  if (hostOctets(hosts).some((o) => o > 253)) {
    throw new Error('lab host addresses run past .253: give the hosts explicit octets');
  }
}

/** Each host's last address octet: its own `octet`, else the lowest free one counting from its position. */
function hostOctets(hosts: readonly LabHostSpec[]): number[] {
  const taken = new Set(hosts.map((h) => h.octet).filter((o): o is number => o !== undefined));
  return hosts.map((h, i) => {
    if (h.octet !== undefined) return h.octet;
    let o = i + 1;
    while (taken.has(o)) o++;
    taken.add(o);
    return o;
  });
}

async function deleteLinkIfPresent(name: string): Promise<void> {
  const r = await execFile(['ip', 'link', 'show', 'dev', name]);
  if (r.code === 0) await execOk(['ip', 'link', 'delete', 'dev', name]);
}

/** Best-effort synchronous cleanup when the test process exits without calling teardown(). */
function teardownSync(s: LabState, dir: string): void {
  for (const n of s.netns) {
    const pids = spawnSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).stdout ?? '';
    for (const pid of pids.split('\n').map(Number).filter((p) => p > 0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  spawnSync('ip', ['link', 'delete', 'dev', s.rootIf], { stdio: 'ignore' });
  for (const n of s.netns) spawnSync('ip', ['netns', 'delete', n], { stdio: 'ignore' });
  if (s.subnetOctet !== null) releaseSubnet(s.subnetOctet, s.id);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Removes labs left behind by test runs that died (their owner process is gone): processes, namespaces, the
 * controller veth, the subnet claim and the lab dir. Only labs recorded in /run/tula-lab/<id>/lab.json are
 * touched. Returns the ids it removed.
 */
export async function reapStaleLabs(): Promise<string[]> {
  if (!existsSync(LAB_ROOT)) return [];
  const reaped: string[] = [];
  for (const entry of readdirSync(LAB_ROOT)) {
    if (!/^[0-9a-f]{6}$/.test(entry)) continue;
    const dir = `${LAB_ROOT}/${entry}`;
    let s: LabState;
    try {
      s = JSON.parse(readFileSync(`${dir}/lab.json`, 'utf8')) as LabState;
    } catch {
      continue;
    }
    if (s.id !== entry || isAlive(s.owner)) continue;
    if (!s.netns.every((n) => n.startsWith(`${LAB_PREFIX}-${entry}-`)) || s.rootIf !== `${LAB_PREFIX}${entry}`) continue;
    try {
      for (const n of s.netns) await killNetnsProcesses(n);
      await deleteLinkIfPresent(s.rootIf);
      for (const n of s.netns) await deleteNetns(n);
      if (s.subnetOctet !== null) releaseSubnet(s.subnetOctet, s.id);
      rmSync(dir, { recursive: true, force: true });
      reaped.push(entry);
    } catch {
      // another run may be reaping the same lab right now; whatever is left, the next reap removes
    }
  }
  return reaped;
}
