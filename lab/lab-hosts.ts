/**
 * The hosts of a namespace lab: their SSH keys, their users, and starting each one (anchor, sshd) behind the
 * `LabHost` handle that tests use.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { execOk, spawnBackground } from './exec';
import { startAnchor, execInHost, enterHostArgv, Anchor } from './netns';
import { generateKeyPair, renderSshdProvision, startSshd, KeyPair } from './sshd';
import { LabUserSpec, renderAddUser, validateUserName } from './users';
import { assertLabPrerequisites } from './lab-props';
import type { LabAddresses } from './lab-network';
import type { LabNames, LabResources } from './lifecycle';
import type { LabHost, LabHostSpec, LabProps } from './topology';

/**
 * Lab users get uids from here up, skipping every uid in the machine's /etc/passwd: a host's /etc is an overlay of
 * the machine's, so a lab user must not share a uid with a machine user.
 */
const FIRST_USER_UID = 61000;

/** Fresh keys for every lab: one client key, and one host key per sshd host with its fingerprint. */
export interface LabKeys {
  readonly client: KeyPair;
  readonly hostKeys: ReadonlyMap<string, KeyPair>;
  /** `SHA256:…` by host name, as `ssh-keygen -lf` prints it. */
  readonly fingerprints: ReadonlyMap<string, string>;
}

export async function generateLabKeys(names: LabNames, hosts: readonly LabHostSpec[]): Promise<LabKeys> {
  const { id, dir } = names;
  const client = await generateKeyPair(`${dir}/client_ed25519`, `tula-lab-${id}`);
  const sshHosts = hosts.filter((h) => h.sshd !== false);
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
  return { client, hostKeys, fingerprints };
}

/**
 * The scripts that add lab users on a host (see users.ts). A user name gets one uid for the whole lab: on every host,
 * and again when a test adds it later with `LabHost.addUser`.
 */
function addUserScripts(clientKey: KeyPair): (u: LabUserSpec) => string {
  let nextUid = FIRST_USER_UID;
  const takenUids = new Set(
    readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map((l) => Number(l.split(':')[2])),
  );
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
  return (u) => renderAddUser({ ...u, uid: uidFor(u.name), authorizedKey: clientKey.publicLine });
}

/** What every host of one lab shares. */
interface HostContext {
  readonly names: LabNames;
  readonly resources: LabResources;
  readonly keys: LabKeys;
  readonly machineUsers: ReadonlySet<string>;
  /** Users on every host (`LabProps.users`). */
  readonly commonUsers: readonly LabUserSpec[];
  addUserScript(u: LabUserSpec): string;
}

export interface StartHostsInput {
  readonly names: LabNames;
  readonly resources: LabResources;
  readonly keys: LabKeys;
  readonly addresses: LabAddresses;
  /** The machine's login names (see checkLabProps). */
  readonly machineUsers: ReadonlySet<string>;
}

/** Starts every host in parallel; resolves once each one's sshd (if it has one) listens. */
export async function startHosts(props: LabProps, input: StartHostsInput): Promise<Record<string, LabHost>> {
  const { names, resources, keys, addresses, machineUsers } = input;
  const ctx: HostContext = { names, resources, keys, machineUsers, commonUsers: props.users ?? [], addUserScript: addUserScripts(keys.client) };
  const hosts: Record<string, LabHost> = {};
  await Promise.all(
    props.hosts.map(async (spec, i) => {
      hosts[spec.name] = await startHost(ctx, spec, addresses.hosts[i], addresses.hosts6[i]);
    }),
  );
  return hosts;
}

async function startHost(ctx: HostContext, spec: LabHostSpec, ip: string, ip6: string): Promise<LabHost> {
  const anchor = await startHostAnchor(ctx, spec, ip);
  const host = labHostHandle(ctx, spec, ip, ip6, anchor, await readMac(ctx.names.hostNetns(spec.name)));
  if (ctx.keys.hostKeys.has(spec.name)) await host.startSshd();
  return host;
}

/**
 * Starts the process that holds the host's own mounts and hostname, provisioned with its sshd files and users before
 * anything else runs inside it.
 */
async function startHostAnchor(ctx: HostContext, spec: LabHostSpec, ip: string): Promise<Anchor> {
  const { dir, hostNetns } = ctx.names;
  mkdirSync(`${dir}/hosts/${spec.name}/rw`, { recursive: true });
  const hostKey = ctx.keys.hostKeys.get(spec.name);
  const authorizedKey = ctx.keys.client.publicLine;
  const provision = [
    hostKey ? renderSshdProvision({ hostname: spec.name, listenAddress: ip, port: 22, hostKey, authorizedKey }) : '',
    ...[...ctx.commonUsers, ...(spec.users ?? [])].map(ctx.addUserScript),
  ].join('\n');
  const anchor = await startAnchor({ netns: hostNetns(spec.name), hostname: spec.name, rwDir: `${dir}/hosts/${spec.name}/rw`, provision });
  ctx.resources.anchors.push(anchor);
  return anchor;
}

async function readMac(netns: string): Promise<string> {
  const out = await execOk(['ip', '-n', netns, '-j', 'link', 'show', 'dev', 'eth0']);
  return (JSON.parse(out.stdout) as { address: string }[])[0].address;
}

function labHostHandle(ctx: HostContext, spec: LabHostSpec, ip: string, ip6: string, anchor: Anchor, mac: string): LabHost {
  const { id, hostNetns, knownHostsPath } = ctx.names;
  const { resources, keys } = ctx;
  const hostKey = keys.hostKeys.get(spec.name);
  const clientKeyPath = keys.client.privatePath;
  return {
    name: spec.name,
    netns: hostNetns(spec.name),
    ip,
    ip6,
    sshPort: 22,
    hostKeyLine: hostKey ? hostKey.publicLine.split(' ').slice(0, 2).join(' ') : '',
    hostKeyFingerprint: keys.fingerprints.get(spec.name) ?? '',
    mac,
    anchorPid: anchor.pid,
    exec: (cmd, input) => execInHost(anchor.pid, cmd, input),
    spawn: (argv) => {
      if (resources.isTornDown) throw new Error(`lab ${id} is torn down`);
      const p = spawnBackground(enterHostArgv(anchor.pid, ['setpriv', '--pdeathsig', 'KILL', ...argv]));
      resources.spawned.push(p);
      return p;
    },
    path: (p) => `/proc/${anchor.pid}/root${p.startsWith('/') ? '' : '/'}${p}`,
    startSshd: async () => {
      if (!hostKey) throw new Error(`lab host ${spec.name} has no sshd (sshd: false)`);
      if (resources.sshds.get(spec.name)?.isRunning()) return;
      resources.sshds.set(spec.name, await startSshd(anchor.pid, spec.name));
    },
    stopSshd: async () => {
      await resources.sshds.get(spec.name)?.stop('SIGTERM', 1000);
    },
    sshdRunning: () => resources.sshds.get(spec.name)?.isRunning() ?? false,
    // nsenter, setpriv and sshd exec each other: the process spawned is sshd itself
    sshdPid: () => {
      const p = resources.sshds.get(spec.name);
      return p?.isRunning() ? p.pid : undefined;
    },
    addUser: async (u) => {
      validateUserName(u.name, ctx.machineUsers);
      if (u.sudo) assertLabPrerequisites(true);
      const r = await execInHost(anchor.pid, ['sh', '-ec', ctx.addUserScript(u)]);
      if (r.code !== 0) throw new Error(`lab host ${spec.name}: adding user ${u.name} failed:\n${r.stderr.trim()}`);
    },
    target: (overrides = {}) => ({
      host: ip,
      port: 22,
      user: 'root',
      privateKeyPath: clientKeyPath,
      hostKey: keys.fingerprints.get(spec.name),
      ...overrides,
    }),
    sshArgv: (user = 'root') => [
      'ssh',
      '-F',
      '/dev/null',
      '-i',
      clientKeyPath,
      '-o',
      `UserKnownHostsFile=${knownHostsPath}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'ConnectTimeout=5',
      '-l',
      user,
      ip,
    ],
  };
}
