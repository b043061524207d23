/**
 * Checks on a namespace lab's props, made before the lab creates anything: root and the tools, host names and
 * address octets, user names.
 */
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { LabUserSpec, validateUserName } from './users';
import type { LabHostSpec, LabProps } from './topology';

const HOST_NAME = /^[a-z][a-z0-9]{0,11}$/;

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

/**
 * Checks everything the props ask for and returns the machine's login names. A lab user is added to a host's own
 * /etc/passwd, an overlay of the machine's, so it must not take a name the machine already has; users added later
 * with `LabHost.addUser` are checked against the same names.
 */
export function checkLabProps(props: LabProps): ReadonlySet<string> {
  const allUsers: LabUserSpec[] = [...(props.users ?? []), ...props.hosts.flatMap((h) => h.users ?? [])];
  assertLabPrerequisites(allUsers.some((u) => u.sudo));
  validateHosts(props.hosts);
  const machineUsers = new Set(
    readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map((l) => l.split(':')[0]),
  );
  for (const u of allUsers) validateUserName(u.name, machineUsers);
  return machineUsers;
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
export function hostOctets(hosts: readonly LabHostSpec[]): number[] {
  const taken = new Set(hosts.map((h) => h.octet).filter((o): o is number => o !== undefined));
  return hosts.map((h, i) => {
    if (h.octet !== undefined) return h.octet;
    let o = i + 1;
    while (taken.has(o)) o++;
    taken.add(o);
    return o;
  });
}
