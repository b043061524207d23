/**
 * IP addresses, both families, on top of ipaddr.js (parsing, canonical text, prefix matching). What tula-dsr adds
 * is strictness and its own list of addresses that cannot carry DSR traffic: ipaddr.js accepts shorthand such as
 * `10.1` or octal `010.0.0.1` and zone ids such as `fe80::1%eth0`, and classifies documentation prefixes as
 * reserved, none of which suits a VIP or backend checker.
 */
import * as ipaddr from 'ipaddr.js';

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** Network byte order: 4 or 16 bytes. */
  readonly bytes: readonly number[];
  /** Canonical text: dotted quad, or RFC 5952 compressed lower-case IPv6. */
  readonly text: string;
}

const DOTTED_QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** Hex groups, `::` and an optional embedded dotted quad; no zone id. */
const IPV6_TEXT = /^[0-9A-Fa-f:.]+$/;

const parsedAddresses = new Map<string, IpAddress | null>();

/**
 * Whether a text can be an IPv6 address at all (parseIpAddress accepts none without a colon). The agent asks "is
 * this IPv6" and "what is its canonical text" of every VIP several times a run; for IPv4 the answers need no parse.
 */
export const mayBeIpv6 = (text: string): boolean => text.includes(':');

/**
 * Parses an address strictly: dotted-quad IPv4 (no leading zeros, no shorthand) or IPv6 without a zone id. Checks and
 * renders look up the same few backend addresses once per VIP: each text is parsed once (the results are frozen).
 */
export function parseIpAddress(text: string): IpAddress | null {
  let parsed = parsedAddresses.get(text);
  if (parsed === undefined) {
    parsed = parseIpAddressText(text);
    if (parsedAddresses.size > 65536) parsedAddresses.clear();
    parsedAddresses.set(text, parsed);
  }
  return parsed;
}

function parseIpAddressText(text: string): IpAddress | null {
  // the pattern admits only canonical decimal octets: they are the bytes, and the text is canonical already
  // (ipaddr.js's parser cost a tenth of a second per 10,000-VIP spec; split and map another 20 ms)
  if (DOTTED_QUAD.test(text)) return Object.freeze({ family: 4, bytes: Object.freeze(dottedQuadBytes(text)), text });
  if (!text.includes(':') || !IPV6_TEXT.test(text) || !ipaddr.IPv6.isValid(text)) return null;
  const parsed = ipaddr.IPv6.parse(text);
  return Object.freeze({ family: 6, bytes: Object.freeze(parsed.toByteArray()), text: parsed.toRFC5952String() });
}

/** The four octets of a text DOTTED_QUAD matched. */
function dottedQuadBytes(text: string): number[] {
  const bytes = [0, 0, 0, 0];
  for (let i = 0, b = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) b++;
    else bytes[b] = bytes[b] * 10 + c - 48;
  }
  return bytes;
}

/** An IPv4 address as an unsigned 32-bit integer, or null for anything else. */
export function parseIpv4(text: string): number | null {
  const parsed = parseIpAddress(text);
  return parsed?.family === 4 ? parsed.bytes.reduce((acc, b) => acc * 256 + b, 0) : null;
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** Eight lower-case hex digits of a 32-bit value: a stable, compact identity for names derived from it. */
export function hex32(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}

/** Hex of the address bytes (8 digits for IPv4, 32 for IPv6). */
export function addressHex(address: IpAddress): string {
  return address.bytes.map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Orders address texts: IPv4 before IPv6, then numerically; texts that are not addresses (tokens) last, by text. */
export function compareAddresses(a: string, b: string): number {
  return compareParsed(a, parseIpAddress(a), b, parseIpAddress(b));
}

function compareParsed(a: string, pa: IpAddress | null, b: string, pb: IpAddress | null): number {
  if (!pa || !pb) return pa ? -1 : pb ? 1 : a < b ? -1 : a > b ? 1 : 0;
  if (pa.family !== pb.family) return pa.family - pb.family;
  for (let i = 0; i < pa.bytes.length; i++) if (pa.bytes[i] !== pb.bytes[i]) return pa.bytes[i] - pb.bytes[i];
  return 0;
}

/**
 * Distinct address texts in compareAddresses order, each parsed once: a comparator parses both texts at every
 * comparison, about 14 times per text for 10,000 VIPs in name order.
 */
export function sortedUniqueAddresses(texts: Iterable<string>): string[] {
  const keyed = [...new Set(texts)].map((text) => ({ text, ip: parseIpAddress(text) }));
  keyed.sort((x, y) => compareParsed(x.text, x.ip, y.text, y.ip));
  return keyed.map((k) => k.text);
}

export interface Cidr {
  /** The network address (host bits as written: see hostBitsSet). */
  readonly address: IpAddress;
  readonly prefix: number;
}

export function parseCidr(text: string): Cidr | null {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!match) return null;
  const address = parseIpAddress(match[1]);
  const prefix = Number(match[2]);
  if (!address || prefix > address.bytes.length * 8 || (match[2].length > 1 && match[2].startsWith('0'))) return null;
  return { address, prefix };
}

/** The CIDR's network address with the host bits cleared. */
export function networkOf(cidr: Cidr): IpAddress {
  const family = cidr.address.family === 4 ? ipaddr.IPv4 : ipaddr.IPv6;
  return parseIpAddress(family.networkAddressFromCIDR(formatCidr(cidr)).toString())!;
}

/** The last address of an IPv4 CIDR (its broadcast address); IPv6 has none. */
export function broadcastOf(cidr: Cidr): IpAddress | null {
  return cidr.address.family === 4 ? parseIpAddress(ipaddr.IPv4.broadcastAddressFromCIDR(formatCidr(cidr)).toString()) : null;
}

export function cidrContains(cidr: Cidr, address: IpAddress): boolean {
  if (cidr.address.family !== address.family) return false;
  // byte by byte: checks run this for every VIP and backend against every special range
  const whole = Math.floor(cidr.prefix / 8);
  for (let i = 0; i < whole; i++) if (address.bytes[i] !== cidr.address.bytes[i]) return false;
  const bits = cidr.prefix % 8;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (address.bytes[whole] & mask) === (cidr.address.bytes[whole] & mask);
}

export function formatCidr(cidr: Cidr): string {
  return `${cidr.address.text}/${cidr.prefix}`;
}

/** Ranges that cannot be a VIP or a backend, most specific first, with the reason a message gives. */
const SPECIAL_RANGES: readonly { readonly cidr: string; readonly what: string }[] = [
  { cidr: '0.0.0.0/32', what: 'the unspecified address 0.0.0.0' },
  { cidr: '255.255.255.255/32', what: 'the broadcast address' },
  { cidr: '0.0.0.0/8', what: 'in 0.0.0.0/8 ("this network")' },
  { cidr: '127.0.0.0/8', what: 'a loopback address (127.0.0.0/8)' },
  { cidr: '224.0.0.0/4', what: 'a multicast address (224.0.0.0/4)' },
  { cidr: '240.0.0.0/4', what: 'a reserved address (240.0.0.0/4)' },
  { cidr: '::/128', what: 'the unspecified address ::' },
  { cidr: '::1/128', what: 'the loopback address ::1' },
  { cidr: '::ffff:0:0/96', what: 'an IPv4-mapped address (::ffff:0:0/96); write the IPv4 address itself' },
  { cidr: 'fe80::/10', what: 'a link-local address (fe80::/10), which is only valid on one link' },
  { cidr: 'ff00::/8', what: 'a multicast address (ff00::/8)' },
];
const SPECIAL = SPECIAL_RANGES.map((r) => ({ cidr: parseCidr(r.cidr)!, what: r.what }));

/**
 * Per first byte, whether an IPv4 address starting with it may be in one of SPECIAL's ranges: most addresses (every
 * VIP of a large balancer) are then answered without a look at the ranges.
 */
const SPECIAL_FIRST_BYTES: readonly boolean[] = Array.from({ length: 256 }, (_, first) =>
  SPECIAL.some(
    ({ cidr }) =>
      cidr.address.family === 4 &&
      (cidr.prefix < 8 ? first >> (8 - cidr.prefix) === cidr.address.bytes[0] >> (8 - cidr.prefix) : first === cidr.address.bytes[0]),
  ),
);

/** Why an address cannot be a VIP or a backend, or null when it is an ordinary unicast address. */
export function specialAddress(address: IpAddress): string | null {
  if (address.family === 4 && !SPECIAL_FIRST_BYTES[address.bytes[0]]) return null;
  // parseIpAddress hands out one object per text: a spec's backends are checked once per VIP, looked up once
  let special = specialAddresses.get(address);
  if (special === undefined) specialAddresses.set(address, (special = SPECIAL.find((r) => cidrContains(r.cidr, address))?.what ?? null));
  return special;
}
const specialAddresses = new WeakMap<IpAddress, string | null>();

export function isLoopback(address: IpAddress): boolean {
  return address.family === 4 ? address.bytes[0] === 127 : address.text === '::1';
}
