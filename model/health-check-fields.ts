import { parseIpAddress } from './address';
import { FieldCheck, HOSTNAME_PATTERN, checkPort } from './fields';
import { showValue } from './issues';

/**
 * The checks of each health-check field. Like model/fields.ts, each returns null when the value is acceptable, or a
 * message that quotes the bad value and says what is allowed.
 */

export const HEALTH_CHECK_KINDS = ['none', 'tcp', 'http', 'udp'] as const;
export type HealthCheckKind = (typeof HEALTH_CHECK_KINDS)[number];
/** The kinds that send probes. */
export type ProbeKind = Exclude<HealthCheckKind, 'none'>;

export const HEALTH_CHECK_DEFAULTS = {
  intervalSec: 2,
  timeoutSec: 1,
  fall: 3,
  rise: 2,
  path: '/',
  expectStatus: '200-399',
} as const;

/**
 * Seconds are counted in tenths. Sub-second intervals are allowed: detection takes `intervalSec × fall`, so they let a
 * dead backend lose its new flows in under a second (keepalived's VRRP fails over in 0.6 s at advert_int 0.2), and
 * probes are deduplicated per backend, not per VIP, so they stay cheap. 0.2 s is the floor: the timeout must fit
 * below the interval, and a timeout under 0.1 s is within reach of a busy backend's scheduling jitter (checks flap).
 */
export const HEALTH_CHECK_LIMITS = {
  intervalSec: { min: 0.2, max: 3600 },
  timeoutSec: { min: 0.1, max: 60 },
  fall: { min: 1, max: 100 },
  rise: { min: 1, max: 100 },
  pathLength: 1024,
  payloadBytes: 512,
} as const;

const inTenths = (v: unknown, min: number, max: number): boolean =>
  typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max && Math.abs(v * 10 - Math.round(v * 10)) < 1e-9;

const tenthsIn =
  (limits: { min: number; max: number }, extra = ''): FieldCheck =>
  (v) =>
    inTenths(v, limits.min, limits.max)
      ? null
      : `${showValue(v)} is not allowed; use a number of seconds from ${limits.min} to ${limits.max}, in steps of 0.1${extra}`;

const countIn =
  (limits: { min: number; max: number }, what: string): FieldCheck =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= limits.min && v <= limits.max
      ? null
      : `${showValue(v)} is not allowed; use an integer from ${limits.min} to ${limits.max} (${what})`;

export const checkHealthCheckKind: FieldCheck = (v) =>
  typeof v === 'string' && (HEALTH_CHECK_KINDS as readonly string[]).includes(v)
    ? null
    : `${showValue(v)} is not a supported health check kind; use one of ${HEALTH_CHECK_KINDS.map((k) => `'${k}'`).join(', ')}`;

export const checkProbePort: FieldCheck = checkPort;
export const checkIntervalSec = tenthsIn(HEALTH_CHECK_LIMITS.intervalSec, ' (such as 0.5 or 2)');
export const checkTimeoutSec = tenthsIn(HEALTH_CHECK_LIMITS.timeoutSec, ', below intervalSec');
export const checkFall = countIn(HEALTH_CHECK_LIMITS.fall, 'failed probes in a row that mark a backend down');
export const checkRise = countIn(HEALTH_CHECK_LIMITS.rise, 'passed probes in a row that mark a backend up again');

/** RFC 3986 path and query characters; anything else (spaces, quotes, line breaks) must be percent-encoded. */
const PATH_PATTERN = /^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$/;

/** A long value quoted by its start and its length, so that a message stays readable. */
const showStart = (v: string, unit: string, length = v.length) => `${JSON.stringify(v.slice(0, 24))}… (${length} ${unit})`;

export const checkHttpPath: FieldCheck = (v) => {
  const limit = HEALTH_CHECK_LIMITS.pathLength;
  if (typeof v === 'string' && v.length > limit) return `${showStart(v, 'characters')} is too long; use a path of at most ${limit} characters`;
  return typeof v === 'string' && PATH_PATTERN.test(v)
    ? null
    : `${showValue(v)} is not a usable path; use an absolute path such as '/healthz', of letters, digits and -._~!$&'()*+,;=:@/? (encode anything else as %XX)`;
};

/** Ranges of HTTP status codes, from `'200-399'` or `'200,204,301-302'`; null when the text is not such a list. */
export function parseStatusList(text: string): [number, number][] | null {
  const ranges: [number, number][] = [];
  for (const part of text.split(',')) {
    const match = /^([1-5]\d\d)(?:-([1-5]\d\d))?$/.exec(part);
    if (!match) return null;
    const low = Number(match[1]);
    const high = Number(match[2] ?? match[1]);
    if (high < low) return null;
    ranges.push([low, high]);
  }
  return ranges;
}

export const statusInList = (ranges: readonly [number, number][], status: number): boolean => ranges.some(([low, high]) => status >= low && status <= high);

export const checkExpectStatus: FieldCheck = (v) =>
  typeof v === 'string' && parseStatusList(v) !== null
    ? null
    : `${showValue(v)} is not a list of HTTP status codes; use codes and ranges from 100 to 599 separated by commas, without spaces, such as '200-399' or '200,204,301-302'`;

export const checkHostHeader: FieldCheck = (v) => {
  const match = typeof v === 'string' ? /^(.*?)(?::(\d{1,5}))?$/.exec(v) : null;
  const name = match?.[1] ?? '';
  const isAddress = parseIpAddress(name)?.family === 4;
  const isName = HOSTNAME_PATTERN.test(name) && !/^[\d.]+$/.test(name);
  const portOk = match?.[2] === undefined || checkPort(Number(match[2])) === null;
  return match && (isAddress || isName) && portOk
    ? null
    : `${showValue(v)} is not a usable Host header; use a DNS name or an IPv4 address, optionally with ':port', such as 'www.example.com'`;
};

const hexBytes =
  (what: string): FieldCheck =>
  (v) => {
    const limit = HEALTH_CHECK_LIMITS.payloadBytes;
    if (typeof v === 'string' && v.length > limit * 2) return `${showStart(v, 'bytes', v.length / 2)} is too long ${what}; use at most ${limit} bytes`;
    return typeof v === 'string' && /^(?:[0-9A-Fa-f]{2})+$/.test(v)
      ? null
      : `${showValue(v)} is not usable ${what}; use an even number of hex digits, 1 to ${limit} bytes, such as 'c0ffee'`;
  };

export const checkPayloadHex = hexBytes('as a payload');
export const checkExpectHex = hexBytes('as expected reply bytes');
