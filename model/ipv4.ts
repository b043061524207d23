/** IPv4 arithmetic on unsigned 32-bit integers. Strict dotted-quad only: no leading zeros, no shorthand. */

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function parseIpv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return null;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** Eight lower-case hex digits: a stable, compact identity for names derived from an address. */
export function ipv4Hex(value: number): string {
  return value.toString(16).padStart(8, '0');
}

export interface Cidr {
  readonly network: number;
  readonly prefix: number;
}

export function parseCidr(text: string): Cidr | null {
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!match) return null;
  const address = parseIpv4(match[1]);
  const prefix = Number(match[2]);
  if (address === null || prefix > 32) return null;
  return { network: address, prefix };
}

export function cidrSize(cidr: Cidr): number {
  return 2 ** (32 - cidr.prefix);
}

export function networkOf(address: number, prefix: number): number {
  const size = 2 ** (32 - prefix);
  return address - (address % size);
}

export function cidrContains(cidr: Cidr, address: number): boolean {
  return networkOf(address, cidr.prefix) === cidr.network;
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIpv4(cidr.network)}/${cidr.prefix}`;
}

/** Why an address cannot be a VIP or a backend, or null when it is an ordinary unicast address. */
export function specialIpv4(value: number): string | null {
  const first = Math.floor(value / 2 ** 24);
  if (value === 0) return 'the unspecified address 0.0.0.0';
  if (value === 0xffffffff) return 'the broadcast address';
  if (first === 0) return 'in 0.0.0.0/8 ("this network")';
  if (first === 127) return 'a loopback address (127.0.0.0/8)';
  if (first >= 224 && first <= 239) return 'a multicast address (224.0.0.0/4)';
  if (first >= 240) return 'a reserved address (240.0.0.0/4)';
  return null;
}
