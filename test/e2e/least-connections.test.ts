/**
 * Least connections end to end on the L2 namespace lab: two backends of the web VIP, web1 holding each request 2 s
 * and web2 0.2 s, under a steady 50 new connections per second for 30 s from the client (open loop). The backends'
 * own active connection counts, sampled every 100 ms with `ss` on the backends themselves, show what each algorithm
 * does: least connections keeps them level (the slow backend gets about a tenth of the new flows), round robin lets
 * them differ about tenfold, and weighted least connections with weights 2:1 keeps them at 2:1. Levels are compared
 * as means over the window: at about nine connections each, even a per-connection scheduler that always picks the
 * current minimum keeps single samples within ±25% (or ±2) only about half the time (simulated), so the share of
 * level samples is asserted loosely, and the means within ±30% (or ±2.5). Measured: 9.1 vs 9.2 active and 98% level
 * samples on a quiet machine when least connections was built; later 6.5–7.8 vs 9.5 and 35–72% level, from two
 * faults in the runtime's estimate, since mended (see runtime/least-connections.ts): the first open-flow recount, at
 * the load's start, counted the flows that started during the listing twice, and the slow backend's holding time
 * came out 10–20% long. Since: 8.9–10.8 vs 9.3–9.4 and 90–95% level (quiet and at load 6); round robin: 50 vs 5
 * active, 0% level; weighted 2:1: 15.6–15.9 vs 8.6–8.9.
 *
 * Needs root and terraform; without them every test here fails (none is skipped).
 */
import { createL2Lab, L2Lab } from '../../lab/l2/lab';
import { createWorkspace, Workspace } from '../../lab/l2/deploy';
import { httpRate } from '../../lab/l2/traffic';
import type { ExampleOptions } from '../../lab/example-stack';
import type { LabHost } from '../../lab/topology';
import { applyExample, expectOk } from '../support/lab-run';

jest.setTimeout(240_000);

const HOLD_MS = { web1: 2000, web2: 200 };
const RATE = 50;
const SECONDS = 30;
/**
 * Samples from the first seconds are left out: the slow backend's connections build up over its 2 s hold, and the
 * control loop learns its holding time from the first ends, in rounds that come late on a loaded machine.
 */
const WARM_UP_MS = 10_000;
/** Share of samples that must be level (see above): round robin reaches 0%. */
const LEVEL_SHARE_FLOOR = 0.6;
/** How far apart the mean active connections per weight may be: ±30% of their average, or ±2.5. */
const levelMeans = (a: number, b: number) => Math.abs(a - b) <= Math.max(2.5, 0.3 * ((a + b) / 2));

let l2: L2Lab;
let ws: Workspace;

interface Sample {
  readonly at: number;
  readonly established: number;
}

/** Every 100 ms, the backend's established connections on port 80, as `ss` on the backend counts them. */
function startSampler(host: LabHost) {
  const p = host.spawn(['sh', '-c', `while :; do echo "$(date +%s%3N) $(ss -Htn state established '( sport = :80 )' | wc -l)"; sleep 0.1; done`]);
  return {
    async stop(): Promise<Sample[]> {
      await p.stop('SIGKILL');
      return p
        .stdoutText()
        .trim()
        .split('\n')
        .map((l) => l.split(' ').map(Number))
        .filter(([at, n]) => Number.isFinite(at) && Number.isFinite(n))
        .map(([at, established]) => ({ at, established }));
    },
  };
}

interface Measured {
  readonly mean: Record<string, number>;
  /** Share of the samples where the two counts per weight were within ±25% (or ±2) of each other. */
  readonly levelShare: number;
  readonly flows: Record<string, number>;
  readonly samples: number;
}

async function measure(options: ExampleOptions): Promise<Measured> {
  await applyExample(ws, { backends: ['web1', 'web2'], ...options });
  const samplers = Object.fromEntries(l2.backends.map((b) => [b.name, startSampler(b)]));
  const started = Date.now();
  const load = await httpRate(l2.client, l2.python, {
    host: l2.vips.web,
    port: 80,
    path: `/hold?web1=${HOLD_MS.web1}&web2=${HOLD_MS.web2}`,
    rate: RATE,
    seconds: SECONDS,
  });
  const samples = Object.fromEntries(await Promise.all(Object.entries(samplers).map(async ([name, s]) => [name, await s.stop()] as const)));
  expect({ failures: load.failures, errors: load.errors }).toEqual({ failures: 0, errors: [] });
  // the client kept its pace: no request started more than 0.5 s late
  expect(load.lateMs).toBeLessThan(500);
  const window = (s: Sample[]) => s.filter((x) => x.at >= started + WARM_UP_MS && x.at <= started + SECONDS * 1000);
  const [a, b] = [window(samples.web1), window(samples.web2)];
  const pairs = a.map((x) => [x.established, b.reduce((best, y) => (Math.abs(y.at - x.at) < Math.abs(best.at - x.at) ? y : best)).established]);
  // per weight: with weights 2:1, twice as many on web1 is level
  const weights = options.weights as Record<string, number>;
  const level = pairs.map(([p, q]) => [p / weights.web1, q / weights.web2]).filter(([p, q]) => Math.abs(p - q) <= Math.max(2, 0.25 * Math.max(p, q))).length;
  const mean = (s: Sample[]) => Math.round((s.reduce((sum, x) => sum + x.established, 0) / s.length) * 10) / 10;
  return { mean: { web1: mean(a), web2: mean(b) }, levelShare: Math.round((level / pairs.length) * 100) / 100, flows: load.counts, samples: pairs.length };
}

const show = (what: string, m: Measured) =>
  `${what}: mean established web1 (2 s) ${m.mean.web1}, web2 (0.2 s) ${m.mean.web2}; level per weight (±25% or ±2) in ${Math.round(m.levelShare * 100)}% of ${m.samples} samples; new flows ${JSON.stringify(m.flows)}`;

beforeAll(async () => {
  l2 = await createL2Lab({ backends: 2 });
  ws = await createWorkspace({ inventory: l2.inventory, inventoryPath: l2.inventoryPath, engine: 'terraform_data' });
  ws.synth({ backends: ['web1', 'web2'], weights: { web1: 1, web2: 1 } });
  expectOk('terraform init', await ws.terraform(['init', '-input=false', '-no-color']));
}, 120_000);

afterAll(async () => {
  if (ws) await ws.terraform(['destroy', '-auto-approve', '-input=false', '-no-color']);
  await l2?.teardown();
  ws?.remove();
});

describe('least connections on the L2 lab (50 new connections/s for 30 s; web1 holds each 2 s, web2 0.2 s)', () => {
  test('GIVEN least-connections THEN the two backends’ active connections stay level, and the slow one gets about a tenth of the new flows', async () => {
    const m = await measure({ algorithm: 'least-connections', weights: { web1: 1, web2: 1 } });
    console.log(show('least-connections', m));
    expect({ web1: m.mean.web1, web2: m.mean.web2, level: levelMeans(m.mean.web1, m.mean.web2) }).toMatchObject({ level: true });
    expect(m.levelShare).toBeGreaterThanOrEqual(LEVEL_SHARE_FLOOR);
    const slowShare = m.flows.web1 / (m.flows.web1 + m.flows.web2);
    expect(slowShare).toBeGreaterThan(0.04);
    expect(slowShare).toBeLessThan(0.2);
  });

  test('GIVEN round-robin THEN the slow backend holds about ten times the connections of the fast one', async () => {
    const m = await measure({ algorithm: 'round-robin', weights: { web1: 1, web2: 1 } });
    console.log(show('round-robin', m));
    expect(m.mean.web1 / m.mean.web2).toBeGreaterThan(6);
    expect(Math.abs(m.flows.web1 - m.flows.web2)).toBeLessThanOrEqual(1);
  });

  test('GIVEN weighted-least-connections with weights 2 (slow) : 1 (fast) THEN the active connections follow the weights', async () => {
    const m = await measure({ algorithm: 'weighted-least-connections', weights: { web1: 2, web2: 1 } });
    console.log(show('weighted-least-connections 2:1', m));
    const ratio = m.mean.web1 / m.mean.web2;
    expect(ratio).toBeGreaterThan(1.5);
    expect(ratio).toBeLessThan(2.5);
    expect(m.levelShare).toBeGreaterThanOrEqual(LEVEL_SHARE_FLOOR);
  });
});
