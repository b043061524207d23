import { z } from 'zod';
import { FieldCheck, integerIn } from './fields';
import { showValue } from './issues';
import type { IsUnresolved } from './spec';

/**
 * Where and how often the balancer runtime writes its statistics for node_exporter's textfile collector (the
 * `Balancer` props `statsTextfile` and `statsIntervalSec`).
 */

/** The textfile directory of Debian's prometheus-node-exporter package (its --collector.textfile.directory). */
export const DEFAULT_TEXTFILE_PATH = '/var/lib/prometheus/node-exporter/tula_dsr.prom';

/**
 * 15 s: Prometheus' usual scrape interval, so a scrape rarely sees figures older than one interval. The floor of 1 s
 * keeps a balancer from listing its counters back to back (a listing takes 0.35–0.6 s at 10,000 VIPs, seconds with
 * 100,000 open flows); the ceiling is an hour, like the health checks'.
 */
export const STATS_TEXTFILE_DEFAULTS = { intervalSec: 15 } as const;
export const STATS_TEXTFILE_LIMITS = { intervalSec: { min: 1, max: 3600 }, pathLength: 1024 } as const;

/**
 * Absolute, of `/`-separated names made of letters, digits, `.`, `_` and `-`, ending in `.prom` (node_exporter reads
 * only `*.prom`). The path reaches a shell (the agent removes the file) and the runtime's file writes, so nothing
 * else is allowed: no spaces, no quotes, no empty segment, and no `.` or `..` segment (checked apart).
 */
const TEXTFILE_PATTERN = /^(?:\/[A-Za-z0-9._-]+)+$/;

/** Whether a string is a textfile path tula-dsr writes and removes (see TEXTFILE_PATTERN). */
export function isStatsTextfilePath(v: unknown): v is string {
  return (
    typeof v === 'string' &&
    v.length <= STATS_TEXTFILE_LIMITS.pathLength &&
    TEXTFILE_PATTERN.test(v) &&
    v.endsWith('.prom') &&
    !v.endsWith('/.prom') &&
    !v.split('/').some((segment) => segment === '.' || segment === '..')
  );
}

export const checkStatsTextfile: FieldCheck = (v) =>
  typeof v === 'boolean' || isStatsTextfilePath(v)
    ? null
    : `${showValue(v)} is not a usable statistics textfile; use true (${DEFAULT_TEXTFILE_PATH}), false (none), or an absolute path ending in '.prom' of letters, digits, '.', '_', '-' and '/', without '.' or '..' segments, at most ${STATS_TEXTFILE_LIMITS.pathLength} characters`;

export const checkStatsIntervalSec: FieldCheck = integerIn(
  STATS_TEXTFILE_LIMITS.intervalSec.min,
  STATS_TEXTFILE_LIMITS.intervalSec.max,
  `an integer number of seconds from ${STATS_TEXTFILE_LIMITS.intervalSec.min} to ${STATS_TEXTFILE_LIMITS.intervalSec.max}`,
);

/** A field that must be known at synth (policy, not a value another resource produces): a token is refused. */
function synthTimeField<T>(name: string, check: FieldCheck, isUnresolved: IsUnresolved) {
  return z.custom<T>((v) => !isUnresolved(v) && check(v) === null, {
    error: (iss) =>
      isUnresolved(iss.input) ? `is a Terraform token, but ${name} must be known at synth; use a literal value` : (check(iss.input) ?? 'is not allowed'),
  });
}

/**
 * The two spec fields. The spec stores the path the runtime writes (`true` becomes DEFAULT_TEXTFILE_PATH, so a plan
 * shows it; `false` leaves the field out), and with it the interval, filled in by withStatsDefaults. A balancer
 * without a textfile carries neither: existing specs, and so their plans, stay as they were.
 */
export function createStatsTextfileFields(isUnresolved: IsUnresolved) {
  return {
    statsTextfile: synthTimeField<string | boolean>('statsTextfile', checkStatsTextfile, isUnresolved)
      .transform((v): string | undefined => (v === true ? DEFAULT_TEXTFILE_PATH : v === false ? undefined : v))
      .optional(),
    statsIntervalSec: synthTimeField<number>('statsIntervalSec', checkStatsIntervalSec, isUnresolved).optional(),
  };
}

interface StatsTextfileFields {
  readonly statsTextfile?: string;
  readonly statsIntervalSec?: number;
}

/** Fills the interval of a balancer that writes a textfile (the spec then parses again to itself). */
export function withStatsDefaults<T extends StatsTextfileFields>(spec: T): T {
  return spec.statsTextfile !== undefined && spec.statsIntervalSec === undefined ? { ...spec, statsIntervalSec: STATS_TEXTFILE_DEFAULTS.intervalSec } : spec;
}

export interface StatsTextfileSettings {
  readonly path: string;
  readonly intervalSec: number;
}

/** What the runtime writes, or null when the balancer has no statistics textfile. */
export function statsTextfileSettings(spec: StatsTextfileFields): StatsTextfileSettings | null {
  if (spec.statsTextfile === undefined) return null;
  return { path: spec.statsTextfile, intervalSec: spec.statsIntervalSec ?? STATS_TEXTFILE_DEFAULTS.intervalSec };
}

/** The interval is set but there is no textfile to write at that interval: a mistake, not a silent no-op. */
export function statsIntervalWithoutTextfile(spec: StatsTextfileFields): string | null {
  return spec.statsIntervalSec !== undefined && spec.statsTextfile === undefined
    ? `${showValue(spec.statsIntervalSec)} has no effect: it is the interval of the statistics textfile, and statsTextfile is absent or false; set statsTextfile (true writes ${DEFAULT_TEXTFILE_PATH}) or remove statsIntervalSec`
    : null;
}
