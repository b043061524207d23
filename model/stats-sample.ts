import { BACKEND_MAC_MAP6, BALANCER_TABLE, VIP_STATS_SETS } from './nft/balancer';
import { RUNTIME_STATE_FILE, RuntimeState, parseRuntimeState } from './runtime-state';
import {
  BACKEND_MAC_MAP,
  CounterValue,
  POOL_FLOW_SETS,
  STATS_COUNTERS_COMMAND,
  parseBackendMacs,
  parseNftCounters,
  parsePoolFlowSets,
  parseVipStatsSets,
} from './stats';
import { renderCommand } from './shell';
import { parseSections, sectionLine } from './sections';

/**
 * One sample of a balancer in one round trip (over SSH for `tula-dsr stats`; run locally by the runtime for its
 * Prometheus textfile): the clock, the counters listing (nft's whole cost, see
 * STATS_COUNTERS_COMMAND), the clock again, and the runtime's state file if there is one. The sample's time is
 * the clock after the listing, because nft reads the counters at the end of it.
 */
export function renderSampleScript(): string {
  return (
    [
      'export LC_ALL=C',
      'e=$(mktemp) || exit 1',
      sectionLine('before'),
      'date +%s.%N',
      sectionLine('counters'),
      `${renderCommand(STATS_COUNTERS_COMMAND)} 2>"$e"; s=$?`,
      sectionLine('after'),
      'date +%s.%N',
      // the pool flow counts and the VIPs' are set elements: listing a set reads that set alone
      ...[...POOL_FLOW_SETS.map(({ set }) => set), ...VIP_STATS_SETS].flatMap((set) => [
        sectionLine(`set ${set}`),
        `${renderCommand(['nft', 'list', 'set', 'netdev', BALANCER_TABLE, set])} 2>/dev/null`,
      ]),
      sectionLine('macs'),
      `${renderCommand(['nft', 'list', 'map', 'netdev', BALANCER_TABLE, BACKEND_MAC_MAP])} 2>/dev/null`,
      `${renderCommand(['nft', 'list', 'map', 'netdev', BALANCER_TABLE, BACKEND_MAC_MAP6])} 2>/dev/null`,
      sectionLine('nft'),
      'echo "status=$s"',
      `sed 's/^/|/' "$e"`,
      'rm -f "$e"',
      sectionLine('runtime'),
      `if [ -f ${renderCommand([RUNTIME_STATE_FILE])} ]; then cat ${renderCommand([RUNTIME_STATE_FILE])}; echo; fi`,
      sectionLine('end'),
    ].join('\n') + '\n'
  );
}

export interface BalancerSample {
  readonly counters: Map<string, CounterValue>;
  readonly runtime: RuntimeState | null;
  /** The state file exists but is not a runtime state this version reads. */
  readonly runtimeUnreadable: boolean;
  /** Epoch seconds (with a fraction where the host's `date` gives one), after the listing. */
  readonly sampledAt: number;
  readonly listingMs: number;
}

/** A sample the balancer could not give: no table, no nft, a truncated answer. */
export class SampleError extends Error {}

/** `date +%s.%N`; busybox builds without nanoseconds print `%N` (or nothing) after the dot. */
function parseClock(text: string | undefined): number | null {
  const m = /^(\d+)(?:\.(\d+))?/.exec(text?.trim() ?? '');
  return m ? Number(m[1]) + (m[2] ? Number(`0.${m[2]}`) : 0) : null;
}

export function parseSampleOutput(output: string): BalancerSample {
  const sections = parseSections(output);
  if (!sections.has('end')) throw new SampleError('the sample script did not finish: its output has no end marker');
  const nft = sections.get('nft') ?? '';
  const status = Number(/^status=(\d+)$/m.exec(nft)?.[1] ?? NaN);
  const stderr = nft
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .map((l) => l.slice(1))
    .join('\n')
    .trim();
  if (status !== 0) {
    const command = renderCommand(STATS_COUNTERS_COMMAND);
    if (status === 127) throw new SampleError(`nft is not installed on the balancer (\`${command}\` exited 127)`);
    if (/No such file or directory/.test(stderr))
      throw new SampleError(`the balancer has no nft table ${STATS_COUNTERS_COMMAND.slice(-2).join(' ')}: apply the stack first`);
    throw new SampleError(`\`${command}\` exited ${Number.isNaN(status) ? 'without a status' : status}${stderr ? `: ${stderr}` : ''}`);
  }
  let counters: Map<string, CounterValue>;
  try {
    counters = parseNftCounters(sections.get('counters') ?? '');
    const macs = parseBackendMacs(sections.get('macs') ?? '');
    const flows = parsePoolFlowSets(
      POOL_FLOW_SETS.map(({ role, set }) => ({ role, text: sections.get(`set ${set}`) ?? '' })),
      macs,
    );
    for (const [name, value] of flows) counters.set(name, value);
    for (const [name, value] of parseVipStatsSets(VIP_STATS_SETS.map((set) => sections.get(`set ${set}`) ?? ''))) counters.set(name, value);
  } catch (error) {
    throw new SampleError(`cannot read the counters listing: ${(error as Error).message}`);
  }
  const before = parseClock(sections.get('before'));
  const after = parseClock(sections.get('after'));
  if (after === null) throw new SampleError(`cannot read the balancer's clock: ${JSON.stringify(sections.get('after')?.trim())}`);
  const text = sections.get('runtime');
  const runtime = parseRuntimeState(text);
  return {
    counters,
    runtime,
    runtimeUnreadable: runtime === null && !!text?.trim(),
    sampledAt: after,
    listingMs: before === null ? 0 : Math.max(0, Math.round((after - before) * 1000)),
  };
}
