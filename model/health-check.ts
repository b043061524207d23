import { z } from 'zod';
import { unknownKeyMessage } from './fields';
import {
  HEALTH_CHECK_DEFAULTS,
  HEALTH_CHECK_KINDS,
  HealthCheckKind,
  checkExpectHex,
  checkExpectStatus,
  checkFall,
  checkHealthCheckKind,
  checkHostHeader,
  checkHttpPath,
  checkIntervalSec,
  checkPayloadHex,
  checkProbePort,
  checkRise,
  checkTimeoutSec,
} from './health-check-fields';
import type { FieldCheck } from './fields';
import { showValue } from './issues';
import type { IsUnresolved } from './spec';

/** What every probing check has in common. */
export interface HealthCheckTiming {
  /**
   * The port to probe. A DSR service often listens on the VIP only, so the probe is addressed to the VIP and sent
   * through one backend; a separate health port on the backend works as well.
   * @default - the VIP port; required on an all-ports ('*') VIP
   */
  readonly port?: number;
  /**
   * Seconds between two probes of a backend, from 0.2 to 3600 in steps of 0.1.
   * @default 2
   */
  readonly intervalSec?: number;
  /**
   * Seconds a probe may take, from 0.1 to 60 in steps of 0.1, less than intervalSec.
   * @default 1, or half of intervalSec (rounded down to a tenth) when that is shorter
   */
  readonly timeoutSec?: number;
  /**
   * Failed probes in a row that take a backend out of new flows (1 to 100).
   * @default 3
   */
  readonly fall?: number;
  /**
   * Passed probes in a row that bring a failed backend back (1 to 100).
   * @default 2
   */
  readonly rise?: number;
}

/** No probes: every backend with a weight takes new flows (tula-dsr's behaviour without health checks). */
export interface NoHealthCheck {
  readonly kind: 'none';
}

/** Passes when a TCP connection to the port is accepted; the balancer then resets it (no TIME_WAIT piles up). */
export interface TcpHealthCheck extends HealthCheckTiming {
  readonly kind: 'tcp';
}

/** Passes when `GET path` answers with a status in `expectStatus`. */
export interface HttpHealthCheck extends HealthCheckTiming {
  readonly kind: 'http';
  /**
   * The path (and query) to request: letters, digits and -._~!$&'()*+,;=:@/? (anything else as %XX), at most 1024.
   * @default '/'
   */
  readonly path?: string;
  /**
   * The statuses that pass: codes and ranges from 100 to 599 separated by commas, such as '200,204,301-302'.
   * @default '200-399'
   */
  readonly expectStatus?: string;
  /**
   * The Host header; may be a Terraform token.
   * @default - the address of the VIP the probe is sent to (with ':port' unless the port is 80)
   */
  readonly host?: string;
}

/** Sends one datagram and passes on a reply (that contains `expectHex`, when set); DNS is the common case. */
export interface UdpHealthCheck extends HealthCheckTiming {
  readonly kind: 'udp';
  /** The datagram to send, as an even number of hex digits (1 to 512 bytes). */
  readonly payloadHex: string;
  /**
   * Bytes (hex) the reply must contain somewhere.
   * @default - any reply passes
   */
  readonly expectHex?: string;
}

/** How the balancer decides whether a backend takes new flows. */
export type HealthCheck = NoHealthCheck | TcpHealthCheck | HttpHealthCheck | UdpHealthCheck;

type Filled<T, Optional extends keyof T> = Required<Omit<T, Optional>> & Partial<Pick<T, Optional>>;
/** A validated check with its defaults filled in, as the spec carries it; the port stays open until a VIP fills it. */
export type HealthCheckSpec =
  NoHealthCheck | Filled<TcpHealthCheck, 'port'> | Filled<HttpHealthCheck, 'port' | 'host'> | Filled<UdpHealthCheck, 'port' | 'expectHex'>;
export type ProbingCheckSpec = Exclude<HealthCheckSpec, NoHealthCheck>;

interface FieldRule {
  readonly check: FieldCheck;
  readonly kinds: readonly HealthCheckKind[];
  /** Whether a Terraform token is accepted at synth (the agent validates the resolved value). */
  readonly tokens: boolean;
}

const PROBING: readonly HealthCheckKind[] = ['tcp', 'http', 'udp'];
/**
 * Tokens make sense where another resource may produce the value (a port, a DNS name for the Host header). The
 * timings, counts, path, statuses and payloads are policy: they must be known at synth, where they are checked.
 */
const FIELD_RULES: Record<string, FieldRule> = {
  kind: { check: checkHealthCheckKind, kinds: HEALTH_CHECK_KINDS, tokens: false },
  port: { check: checkProbePort, kinds: PROBING, tokens: true },
  intervalSec: { check: checkIntervalSec, kinds: PROBING, tokens: false },
  timeoutSec: { check: checkTimeoutSec, kinds: PROBING, tokens: false },
  fall: { check: checkFall, kinds: PROBING, tokens: false },
  rise: { check: checkRise, kinds: PROBING, tokens: false },
  path: { check: checkHttpPath, kinds: ['http'], tokens: false },
  expectStatus: { check: checkExpectStatus, kinds: ['http'], tokens: false },
  host: { check: checkHostHeader, kinds: ['http'], tokens: true },
  payloadHex: { check: checkPayloadHex, kinds: ['udp'], tokens: false },
  expectHex: { check: checkExpectHex, kinds: ['udp'], tokens: false },
};
export const HEALTH_CHECK_FIELDS = Object.keys(FIELD_RULES);

/** A problem inside a health check: `field` is relative to the check (empty: the check itself). */
export interface HealthCheckIssue {
  readonly field: readonly string[];
  readonly message: string;
}

const tenths = (v: number) => Math.round(v * 10) / 10;

/** The timeout when none is given: 1 s, or half the interval (in whole tenths) when that is shorter. */
export const defaultTimeoutSec = (intervalSec: number) => Math.min(HEALTH_CHECK_DEFAULTS.timeoutSec, Math.floor(intervalSec * 5) / 10);

function inapplicable(key: string, value: unknown, kind: HealthCheckKind, rule: FieldRule): string {
  if (kind === 'none') {
    return `${showValue(value)} is set on a health check of kind 'none', which sends no probes; remove it, or choose kind 'tcp', 'http' or 'udp'`;
  }
  const kinds = rule.kinds.map((k) => `'${k}'`).join(' or ');
  return `${showValue(value)} is set on a '${kind}' check, but ${key} only applies to ${kinds} checks; remove it or use kind ${kinds}`;
}

/**
 * Validates a health check, collecting every problem, and fills its defaults. `isUnresolved` tells Terraform tokens
 * (accepted at synth where FIELD_RULES allow them).
 */
export function parseHealthCheck(input: unknown, isUnresolved: IsUnresolved = () => false): { value?: HealthCheckSpec; issues: HealthCheckIssue[] } {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return {
      issues: [
        { field: [], message: `${showValue(input)} is not a health check; use an object such as { kind: 'tcp' } or { kind: 'http', path: '/healthz' }` },
      ],
    };
  }
  const fields = input as Record<string, unknown>;
  const issues: HealthCheckIssue[] = [];
  const add = (key: string, message: string) => issues.push({ field: [key], message });
  for (const key of Object.keys(fields)) {
    if (!(key in FIELD_RULES)) add(key, unknownKeyMessage(key, HEALTH_CHECK_FIELDS, { layer7Hint: false }));
  }
  const kind = checkHealthCheckKind(fields.kind) === null ? (fields.kind as HealthCheckKind) : undefined;
  if (fields.kind === undefined) add('kind', `is required; use one of ${HEALTH_CHECK_KINDS.map((k) => `'${k}'`).join(', ')}`);
  const usable = new Set<string>();
  for (const [key, rule] of Object.entries(FIELD_RULES)) {
    const value = fields[key];
    if (value === undefined) continue;
    if (isUnresolved(value)) {
      if (rule.tokens) usable.add(key);
      else add(key, `is a Terraform token, but ${key} must be known at synth; use a literal value`);
      continue;
    }
    const message = rule.check(value);
    if (message) add(key, message);
    else if (kind !== undefined && !rule.kinds.includes(kind)) add(key, inapplicable(key, value, kind, rule));
    else usable.add(key);
  }
  if (kind === 'udp' && fields.payloadHex === undefined) {
    add('payloadHex', "is required for a 'udp' check: the datagram to send, as hex digits (a DNS query, for example)");
  }
  const intervalSec = usable.has('intervalSec') ? tenths(fields.intervalSec as number) : HEALTH_CHECK_DEFAULTS.intervalSec;
  const timeoutSec = usable.has('timeoutSec') ? tenths(fields.timeoutSec as number) : defaultTimeoutSec(intervalSec);
  if (usable.has('timeoutSec') && timeoutSec >= intervalSec) {
    const defaulted = usable.has('intervalSec') ? '' : ' (the default)';
    add(
      'timeoutSec',
      `${showValue(fields.timeoutSec)} is not less than intervalSec ${intervalSec}${defaulted}; a probe must time out before the next one is due`,
    );
  }
  if (issues.length || kind === undefined) return { issues };
  return { value: fillDefaults(kind, fields, intervalSec, timeoutSec), issues };
}

function fillDefaults(kind: HealthCheckKind, fields: Record<string, unknown>, intervalSec: number, timeoutSec: number): HealthCheckSpec {
  if (kind === 'none') return { kind };
  const common = {
    ...(fields.port !== undefined && { port: fields.port as number }),
    intervalSec,
    timeoutSec,
    fall: (fields.fall as number | undefined) ?? HEALTH_CHECK_DEFAULTS.fall,
    rise: (fields.rise as number | undefined) ?? HEALTH_CHECK_DEFAULTS.rise,
  };
  switch (kind) {
    case 'tcp':
      return { kind, ...common };
    case 'http':
      return {
        kind,
        ...common,
        path: (fields.path as string | undefined) ?? HEALTH_CHECK_DEFAULTS.path,
        expectStatus: (fields.expectStatus as string | undefined) ?? HEALTH_CHECK_DEFAULTS.expectStatus,
        ...(fields.host !== undefined && { host: fields.host as string }),
      };
    case 'udp':
      return {
        kind,
        ...common,
        payloadHex: (fields.payloadHex as string).toLowerCase(),
        ...(fields.expectHex !== undefined && { expectHex: (fields.expectHex as string).toLowerCase() }),
      };
  }
}

/**
 * The zod schema of a health check, for the spec schemas: it reports each problem at its field (`healthCheck.rise`)
 * and outputs the check with its defaults filled in, which parses again to itself (the agent re-validates the spec).
 */
export function createHealthCheckSchema(isUnresolved: IsUnresolved) {
  return z.unknown().transform((input, ctx): HealthCheckSpec => {
    const { value, issues } = parseHealthCheck(input, isUnresolved);
    for (const issue of issues) ctx.issues.push({ code: 'custom', message: issue.message, input, path: [...issue.field] });
    return value ?? z.NEVER;
  });
}
