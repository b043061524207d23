import { Cidr, IpAddress, formatCidr, isLoopback, networkOf, parseCidr, parseIpAddress, specialAddress } from './address';
import { showValue } from './issues';
import { MAGLEV_SIZES } from './scheduling';

/**
 * One function per field kind. Each returns null when the value is acceptable, or a message that quotes the
 * bad value and says what is allowed. The zod schemas and the cross-object checks share these.
 */
export type FieldCheck = (value: unknown) => string | null;

export const PROTOCOLS = ['tcp', 'udp'] as const;
export const MODES = ['l2', 'l3'] as const;
export const ALGORITHMS = ['round-robin', 'weighted-round-robin', 'source-hash', 'consistent-hash', 'least-connections', 'weighted-least-connections'] as const;
export type Protocol = (typeof PROTOCOLS)[number];
export type Mode = (typeof MODES)[number];
export type Algorithm = (typeof ALGORITHMS)[number];

/** Names reach nft object names, file names and shell commands, so they are restricted to this pattern. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
/**
 * Linux interface names: at most 15 characters (IFNAMSIZ - 1). A leading '-' is refused: in a command line the
 * name would read as an option.
 */
export const INTERFACE_PATTERN = /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$/;
export const USER_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;
export const HOSTNAME_PATTERN = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}=?$/;
const KEY_LINE_PATTERN =
  /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}( [^\n\r]*)?$/;

export const LIMITS = {
  weight: { min: 0, max: 1000 },
  flowTimeoutSec: { min: 1, max: 86400 },
  mssClamp: { min: 536, max: 1460 },
} as const;

const isInteger = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

export function integerIn(min: number, max: number, allowed: string): FieldCheck {
  return (v) => (isInteger(v) && v >= min && v <= max ? null : `${showValue(v)} is not allowed; use ${allowed}`);
}

export function oneOf(values: readonly string[], what: string): FieldCheck {
  return (v) =>
    typeof v === 'string' && values.includes(v) ? null : `${showValue(v)} is not a supported ${what}; use one of ${values.map((x) => `'${x}'`).join(', ')}`;
}

export const checkBoolean: FieldCheck = (v) => (typeof v === 'boolean' ? null : `${showValue(v)} is not allowed; use true or false`);

export const checkPort: FieldCheck = integerIn(1, 65535, 'an integer from 1 to 65535');

export const checkVipPort: FieldCheck = (v) =>
  v === '*' || (isInteger(v) && v >= 1 && v <= 65535) ? null : `${showValue(v)} is not allowed; use an integer from 1 to 65535, or '*' for all ports`;

export const checkWeight: FieldCheck = integerIn(LIMITS.weight.min, LIMITS.weight.max, 'an integer from 0 to 1000 (0 drains the backend)');
export const checkFlowTimeout: FieldCheck = integerIn(LIMITS.flowTimeoutSec.min, LIMITS.flowTimeoutSec.max, 'an integer number of seconds from 1 to 86400');
export const checkHashTableSize: FieldCheck = (v) =>
  typeof v === 'number' && (MAGLEV_SIZES as readonly number[]).includes(v)
    ? null
    : `${showValue(v)} is not allowed; use one of the primes ${MAGLEV_SIZES.join(', ')} (slots per VIP; about 100 per backend keeps remapping near 1/N)`;
export const checkMssClamp: FieldCheck = integerIn(LIMITS.mssClamp.min, LIMITS.mssClamp.max, 'an integer from 536 to 1460 (bytes)');
export const checkProtocol: FieldCheck = oneOf(PROTOCOLS, 'protocol');
export const checkMode: FieldCheck = oneOf(MODES, 'mode');

export const checkAlgorithm: FieldCheck = oneOf(ALGORITHMS, 'algorithm');

/** Algorithms whose slot tables the balancer runtime keeps re-weighting from the connections it infers. */
export const LEAST_CONNECTIONS: readonly Algorithm[] = ['least-connections', 'weighted-least-connections'];

export const checkName: FieldCheck = (v) =>
  typeof v === 'string' && NAME_PATTERN.test(v)
    ? null
    : `${showValue(v)} is not a valid name; use 1 to 32 characters of letters, digits, '_' and '-', starting with a letter or digit`;

export const checkInterface: FieldCheck = (v) =>
  typeof v === 'string' && INTERFACE_PATTERN.test(v) && v !== '.' && v !== '..'
    ? null
    : `${showValue(v)} is not a valid interface name; use 1 to 15 characters of letters, digits, '_', '.' and '-', not starting with '-'`;

export const checkUser: FieldCheck = (v) =>
  typeof v === 'string' && USER_PATTERN.test(v)
    ? null
    : `${showValue(v)} is not a valid user name; use a lower-case POSIX login name such as 'root' or 'deploy'`;

/**
 * Why a parsed address cannot carry DSR traffic, as the end of a message about `v`, or null. An IPv4-mapped address
 * names the IPv4 address to write instead.
 */
function unusableAddress(v: unknown, address: IpAddress): string | null {
  const special = specialAddress(address);
  if (special === null) return null;
  if (address.family === 6 && address.bytes.slice(0, 12).join(',') === MAPPED_PREFIX)
    return `${showValue(v)} is ${special}: ${address.bytes.slice(12).join('.')}`;
  return `${showValue(v)} is ${special}; use a unicast IPv${address.family} address`;
}
const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255].join(',');

/** A unicast IPv4 address that can carry traffic (VIPs, backends, balancer addresses). */
export const checkIpv4: FieldCheck = (v) => {
  const parsed = typeof v === 'string' ? parseIpAddress(v) : null;
  if (parsed?.family !== 4) return `${showValue(v)} is not an IPv4 address; use dotted-quad notation such as 10.0.1.100`;
  return unusableAddress(v, parsed);
};

/** A unicast IPv6 address that can carry traffic (a host's or the balancer's own IPv6 address). */
export const checkIpv6: FieldCheck = (v) => {
  const parsed = typeof v === 'string' ? parseIpAddress(v) : null;
  if (parsed?.family !== 6) return `${showValue(v)} is not an IPv6 address; use RFC 4291 notation without a zone, such as fd00:1::11`;
  return unusableAddress(v, parsed);
};

/** A unicast address of either family: VIPs and backends. */
export const checkUnicastIp: FieldCheck = (v) => {
  const parsed = typeof v === 'string' ? parseIpAddress(v) : null;
  if (parsed === null) return `${showValue(v)} is not an IP address; use an IPv4 address such as 10.0.1.100 or an IPv6 address such as fd00:1::100`;
  return unusableAddress(v, parsed);
};

export const checkSshHost: FieldCheck = (v) => {
  // a loopback address is a valid SSH target: a port forward or tunnel to the host (the VM lab uses them)
  const address = typeof v === 'string' ? parseIpAddress(v) : null;
  if (address) return isLoopback(address) ? null : unusableAddress(v, address);
  return typeof v === 'string' && HOSTNAME_PATTERN.test(v) && !/^[\d.]+$/.test(v)
    ? null
    : `${showValue(v)} is not a valid host; use an IPv4 or IPv6 address or a DNS name`;
};

export const checkCidr: FieldCheck = (v) => {
  const cidr = typeof v === 'string' ? parseCidr(v) : null;
  if (cidr?.address.family === 6) return `${showValue(v)} is an IPv6 subnet; set it as ipv6Subnet (subnet is the IPv4 one)`;
  if (!cidr || cidr.prefix < 1 || cidr.prefix > 31) {
    return `${showValue(v)} is not a valid subnet; use CIDR notation with a prefix from /1 to /31, such as 10.0.1.0/24`;
  }
  return hostBitsProblem(v, cidr);
};

export const checkIpv6Cidr: FieldCheck = (v) => {
  const cidr = typeof v === 'string' ? parseCidr(v) : null;
  if (cidr?.address.family === 4) return `${showValue(v)} is an IPv4 subnet; set it as subnet (ipv6Subnet is the IPv6 one)`;
  if (!cidr || cidr.prefix < 1 || cidr.prefix > 127) {
    return `${showValue(v)} is not a valid IPv6 subnet; use CIDR notation with a prefix from /1 to /127, such as fd00:1::/64`;
  }
  return hostBitsProblem(v, cidr);
};

function hostBitsProblem(v: unknown, cidr: Cidr): string | null {
  const network = networkOf(cidr);
  return network.text === cidr.address.text ? null : `${showValue(v)} has host bits set; use ${formatCidr({ address: network, prefix: cidr.prefix })}`;
}

/**
 * What makes a value unusable as the MAC frames are forwarded to (or sent from), or null. The same check covers
 * MACs a user gives and MACs the agent reads on a host (the balancer's neighbour table, its interface).
 */
export function macProblem(v: unknown): 'is not a MAC address' | 'is the all-zero MAC address' | 'is a multicast MAC address' | null {
  if (typeof v !== 'string' || !MAC_PATTERN.test(v)) return 'is not a MAC address';
  if (v === '00:00:00:00:00:00') return 'is the all-zero MAC address';
  return parseInt(v.slice(0, 2), 16) % 2 === 1 ? 'is a multicast MAC address' : null;
}

const MAC_ADVICE = {
  'is not a MAC address': "use six lower-case hex pairs separated by ':', such as 52:54:00:12:34:56",
  'is the all-zero MAC address': "use the backend's unicast MAC",
  'is a multicast MAC address': 'use a unicast MAC',
};

export const checkMac: FieldCheck = (v) => {
  const problem = macProblem(v);
  return problem && `${showValue(v)} ${problem}; ${MAC_ADVICE[problem]}`;
};

export const checkHostKey: FieldCheck = (v) =>
  typeof v === 'string' && (FINGERPRINT_PATTERN.test(v) || KEY_LINE_PATTERN.test(v))
    ? null
    : `${showValue(v)} is not a host key; use a pinned fingerprint 'SHA256:<43 base64 characters>' (ssh-keygen -lf) or an OpenSSH public key line 'ssh-ed25519 AAAA…'`;

export const checkFilePath: FieldCheck = (v) =>
  typeof v === 'string' && v.length > 0 && v.length <= 4096 && !/[\0\r\n]/.test(v)
    ? null
    : `${showValue(v)} is not a usable file path; use a path without NUL or line breaks`;

/** Property names that suggest an L7 (HTTP) feature. */
const L7_HINT = /cookie|header|path|url|uri|sticky|tls|ssl|cert|http|redirect|rewrite|host_?name|sni/i;

/** `layer7Hint: false` where an HTTP-looking property is not an L7 feature request (an HTTP health check's). */
export function unknownKeyMessage(key: string, known: readonly string[], { layer7Hint = true } = {}): string {
  const base = `${showValue(key)} is not a known property; known properties are ${known.join(', ')}`;
  return layer7Hint && L7_HINT.test(key)
    ? `${base}. DSR VIPs are Layer 4 only: the balancer never sees replies or HTTP content, so put cookies, headers and paths on an L7 VIP (a reverse proxy) instead`
    : base;
}
