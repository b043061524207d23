/**
 * Picks a free /24 inside 10.213.0.0/16 for a lab, so parallel labs never share a subnet. The lab's controller
 * address sits in the root namespace, so two labs with the same subnet would break each other's routing.
 *
 * A subnet is claimed with a lock file `/run/tula-lab/subnets/<third octet>` (created with O_EXCL) holding the
 * owner's PID and start time. A claim whose owner is gone can be taken over, unless the root namespace still has
 * an address or route in that subnet (a lab left behind by a killed run: `reapStaleLabs()` removes those).
 */
import { mkdirSync, openSync, writeSync, closeSync, readFileSync, unlinkSync } from 'node:fs';
import { execOk } from './exec';

export const LAB_ROOT = '/run/tula-lab';
const LOCK_DIR = `${LAB_ROOT}/subnets`;

export interface Subnet {
  /** Third octet: the subnet is 10.213.<octet>.0/24. */
  readonly octet: number;
  readonly cidr: string;
  readonly prefixLength: 24;
  /** `10.213.<octet>.<host>` */
  address(host: number): string;
  /** The lab's IPv6 segment: a ULA /64 of its own, `fd00:213:<octet in hex>::/64`. */
  readonly ipv6Cidr: string;
  /** `fd00:213:<octet>::<host>`, both in hex: the host's IPv6 address beside its IPv4 one. */
  ipv6Address(host: number): string;
}

export function subnetOf(octet: number): Subnet {
  return {
    octet,
    cidr: `10.213.${octet}.0/24`,
    prefixLength: 24,
    address: (host: number) => `10.213.${octet}.${host}`,
    ipv6Cidr: `fd00:213:${octet.toString(16)}::/64`,
    ipv6Address: (host: number) => `fd00:213:${octet.toString(16)}::${host.toString(16)}`,
  };
}

/** Parses a user-given subnet; only /24s inside 10.213.0.0/16 are allowed. */
export function parseLabSubnet(cidr: string): Subnet {
  const m = /^10\.213\.(\d{1,3})\.0\/24$/.exec(cidr);
  const octet = m ? Number(m[1]) : NaN;
  if (!m || octet < 1 || octet > 254) {
    throw new Error(`lab subnet "${cidr}" is not allowed: use a /24 inside 10.213.0.0/16, 10.213.1.0/24 to 10.213.254.0/24`);
  }
  return subnetOf(octet);
}

/** Identity of a process that survives PID reuse: PID plus its start time in clock ticks. */
export interface ProcessIdentity {
  readonly pid: number;
  readonly start: string;
}

export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // field 22, counted after the command name, which is in parentheses and may contain spaces
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function selfIdentity(): ProcessIdentity {
  return { pid: process.pid, start: processStartTime(process.pid) ?? '' };
}

export function isAlive(owner: ProcessIdentity): boolean {
  return processStartTime(owner.pid) === owner.start;
}

/** Octets of 10.213.x.0/24 subnets that have an address or a route in the root namespace. */
async function octetsInUse(): Promise<Set<number>> {
  const [addrs, routes] = await Promise.all([execOk(['ip', '-4', '-j', 'addr', 'show']), execOk(['ip', '-4', '-j', 'route', 'show', 'table', 'all'])]);
  const used = new Set<number>();
  const note = (ip: string | undefined) => {
    const m = /^10\.213\.(\d+)\./.exec(ip ?? '');
    if (m) used.add(Number(m[1]));
  };
  for (const link of JSON.parse(addrs.stdout || '[]') as { addr_info?: { local?: string }[] }[]) {
    for (const a of link.addr_info ?? []) note(a.local);
  }
  for (const r of JSON.parse(routes.stdout || '[]') as { dst?: string; prefsrc?: string }[]) {
    note(r.dst);
    note(r.prefsrc);
  }
  return used;
}

function lockPath(octet: number): string {
  return `${LOCK_DIR}/${octet}`;
}

function tryLock(octet: number, labId: string): boolean {
  const body = JSON.stringify({ labId, ...selfIdentity() });
  try {
    const fd = openSync(lockPath(octet), 'wx', 0o644);
    writeSync(fd, body);
    closeSync(fd);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  let owner: ProcessIdentity | undefined;
  try {
    owner = JSON.parse(readFileSync(lockPath(octet), 'utf8')) as ProcessIdentity;
  } catch {
    return false; // being written right now, or unreadable: not ours to take
  }
  if (isAlive(owner)) return false;
  try {
    unlinkSync(lockPath(octet));
  } catch {
    return false;
  }
  return tryLock(octet, labId);
}

/** Claims `wanted` (or any free subnet) for `labId`. */
export async function claimSubnet(labId: string, wanted?: Subnet): Promise<Subnet> {
  mkdirSync(LOCK_DIR, { recursive: true });
  const used = await octetsInUse();
  if (wanted) {
    if (used.has(wanted.octet)) throw new Error(`lab subnet ${wanted.cidr} is in use in the root namespace already`);
    if (!tryLock(wanted.octet, labId)) throw new Error(`lab subnet ${wanted.cidr} is claimed by another running lab`);
    return wanted;
  }
  const start = 1 + Math.floor(Math.random() * 254);
  for (let i = 0; i < 254; i++) {
    const octet = 1 + ((start - 1 + i) % 254);
    if (!used.has(octet) && tryLock(octet, labId)) return subnetOf(octet);
  }
  throw new Error('no free lab subnet in 10.213.0.0/16: too many labs running (or left behind; see reapStaleLabs)');
}

export function releaseSubnet(octet: number, labId: string): void {
  try {
    const owner = JSON.parse(readFileSync(lockPath(octet), 'utf8')) as { labId?: string };
    if (owner.labId === labId) unlinkSync(lockPath(octet));
  } catch {
    /* already released */
  }
}
