import { LeastConnectionsPool, largestRemainder } from '../../runtime/least-connections';

/** Feeds a pool `seconds` of steady traffic in 200 ms rounds: per backend, arrivals per second and holding time. */
function steady(pool: LeastConnectionsPool, traffic: Record<string, { perSec: number; holdSec: number }>, seconds: number, startMs = 0): number {
  const totals = new Map(Object.keys(traffic).map((n) => [n, { created: 0, ended: 0 }]));
  let now = startMs;
  for (let t = 0; t <= seconds * 5; t++) {
    for (const [name, { perSec, holdSec }] of Object.entries(traffic)) {
      const c = totals.get(name)!;
      c.created = Math.round((perSec * t) / 5);
      c.ended = Math.max(0, Math.round(perSec * (t / 5 - holdSec)));
    }
    pool.sample(new Map([...totals].map(([n, c]) => [n, { ...c }])), now);
    now += 200;
  }
  return now;
}

/** Backend a's counters, and a count (open flows, or active connections) of a alone. */
const counts = (created: number, ended: number) => new Map([['a', { created, ended }]]);
const one = (n: number) => new Map([['a', n]]);

describe('least connections: slot weights from inferred active connections', () => {
  test('GIVEN no connection seen yet THEN the slots follow the configured weights', () => {
    const pool = new LeastConnectionsPool();
    expect(
      pool.weights(
        [
          { name: 'a', weight: 1 },
          { name: 'b', weight: 2 },
        ],
        120,
      ),
    ).toEqual(
      new Map([
        ['a', 40],
        ['b', 80],
      ]),
    );
  });

  test('GIVEN a backend that holds connections ten times longer, at equal active connections THEN it gets about a tenth of the new flows', () => {
    const pool = new LeastConnectionsPool();
    // 4.5/s held 2 s and 45/s held 0.2 s: 9 active each, the level least connections keeps
    steady(pool, { slow: { perSec: 4.5, holdSec: 2 }, fast: { perSec: 45, holdSec: 0.2 } }, 20);
    const w = pool.weights(
      [
        { name: 'slow', weight: 1 },
        { name: 'fast', weight: 1 },
      ],
      120,
    );
    expect(w.get('slow')! + w.get('fast')!).toBe(120);
    expect(w.get('slow')).toBeGreaterThanOrEqual(9);
    expect(w.get('slow')).toBeLessThanOrEqual(13);
  });

  test('GIVEN the slow backend’s few ends a second arriving at random THEN its holding time is not overestimated: its share stays about a tenth on average', () => {
    // a seeded generator (mulberry32) and Poisson ends: 0.9 per 200 ms round on the slow backend, 9 on the fast one
    let seed = 42;
    const random = () => {
      seed = (seed + 0x6d2b79f5) >>> 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const poisson = (mean: number) => {
      let k = 0;
      for (let p = random(); p > Math.exp(-mean); p *= random()) k++;
      return k;
    };
    const pool = new LeastConnectionsPool();
    // 9 active on each, held 2 s and 0.2 s: each end is replaced by a new flow at once, so both stay at the level
    const totals = { slow: { created: 9, ended: 0 }, fast: { created: 9, ended: 0 } };
    const slots: number[] = [];
    for (let round = 0; round < 1500; round++) {
      for (const [name, mean] of [
        ['slow', 0.9],
        ['fast', 9],
      ] as const) {
        const ends = poisson(mean);
        totals[name].created += ends;
        totals[name].ended += ends;
      }
      pool.sample(new Map(Object.entries(totals).map(([n, c]) => [n, { ...c }])), round * 200);
      if (round >= 100)
        slots.push(
          pool
            .weights(
              [
                { name: 'slow', weight: 1 },
                { name: 'fast', weight: 1 },
              ],
              120,
            )
            .get('slow')!,
        );
    }
    // Little's law: 120 × (1/2) / (1/2 + 1/0.2) = 10.9 slots; a holding time 15% too long gives 9.5
    const mean = slots.reduce((a, b) => a + b, 0) / slots.length;
    expect(mean).toBeGreaterThan(10.3);
    expect(mean).toBeLessThan(11.5);
  });

  test('GIVEN one backend above the level THEN it gets less than its steady share, and one at twice the level or more gets none', () => {
    const pool = new LeastConnectionsPool();
    // equal holding times, but a has had three times the arrivals: 30 active against 10 (the level is 20)
    steady(pool, { a: { perSec: 30, holdSec: 1 }, b: { perSec: 10, holdSec: 1 } }, 10);
    expect(
      pool.weights(
        [
          { name: 'a', weight: 1 },
          { name: 'b', weight: 1 },
        ],
        120,
      ),
    ).toEqual(
      new Map([
        ['a', 30],
        ['b', 90],
      ]),
    );
    // three backends, only a busy: 30 active against a level of 10
    const three = new LeastConnectionsPool();
    steady(three, { a: { perSec: 30, holdSec: 1 }, b: { perSec: 0, holdSec: 1 }, c: { perSec: 0, holdSec: 1 } }, 10);
    expect(
      three.weights(
        ['a', 'b', 'c'].map((name) => ({ name, weight: 1 })),
        120,
      ),
    ).toEqual(
      new Map([
        ['a', 0],
        ['b', 60],
        ['c', 60],
      ]),
    );
  });

  test('GIVEN weights 2:1 and equal holding times at 2:1 active connections THEN the shares stay 2:1', () => {
    const pool = new LeastConnectionsPool();
    steady(pool, { a: { perSec: 20, holdSec: 1 }, b: { perSec: 10, holdSec: 1 } }, 10);
    expect(
      pool.weights(
        [
          { name: 'a', weight: 2 },
          { name: 'b', weight: 1 },
        ],
        120,
      ),
    ).toEqual(
      new Map([
        ['a', 80],
        ['b', 40],
      ]),
    );
  });

  test('GIVEN a backend with weight 0 (drained or failed its check) THEN it gets no slot', () => {
    const pool = new LeastConnectionsPool();
    steady(pool, { a: { perSec: 10, holdSec: 1 }, b: { perSec: 10, holdSec: 1 } }, 5);
    expect(
      pool.weights(
        [
          { name: 'a', weight: 0 },
          { name: 'b', weight: 1 },
        ],
        120,
      ),
    ).toEqual(
      new Map([
        ['a', 0],
        ['b', 120],
      ]),
    );
  });

  test('GIVEN counters that went down (the table was reloaded) THEN the new values count from zero, never negative', () => {
    const pool = new LeastConnectionsPool();
    pool.sample(counts(100, 90), 0);
    pool.sample(counts(5, 2), 200);
    expect(pool.active()).toEqual(one(13));
  });

  test('GIVEN flows that start while the open flows are listed THEN the correction keeps the estimate and the next sample counts them once', () => {
    const pool = new LeastConnectionsPool();
    pool.sample(counts(5, 0), 0);
    // the listing saw 7: two of the three flows that started while it ran (the counters read after it say 8)
    pool.correct(one(7), counts(8, 0));
    expect(pool.active()).toEqual(one(5));
    pool.sample(counts(10, 0), 200);
    expect(pool.active()).toEqual(one(10));
  });

  test('GIVEN flows that ended without FIN or RST (counted active, gone from the flow map) THEN the correction drops them, down to the nearer end of what the listing could have seen', () => {
    const pool = new LeastConnectionsPool();
    pool.sample(counts(20, 8), 0);
    pool.correct(one(6), counts(20, 8));
    expect(pool.active()).toEqual(one(6));
    // 12 estimated, 15 by the counters after the listing: a count of 9 is 3 below anything it could have seen
    pool.sample(counts(26, 8), 200);
    pool.correct(one(9), counts(29, 8));
    expect(pool.active()).toEqual(one(9));
    // a backend with no open flow listed has none
    pool.correct(new Map(), counts(26, 8));
    expect(pool.active()).toEqual(one(0));
  });

  test('GIVEN shares THEN largestRemainder gives integers that sum to the total, in proportion', () => {
    expect(
      largestRemainder(
        new Map([
          ['a', 1],
          ['b', 1],
          ['c', 1],
        ]),
        10,
      ),
    ).toEqual(
      new Map([
        ['a', 4],
        ['b', 3],
        ['c', 3],
      ]),
    );
    expect(
      largestRemainder(
        new Map([
          ['a', 0],
          ['b', 0],
        ]),
        7,
      ),
    ).toEqual(
      new Map([
        ['a', 4],
        ['b', 3],
      ]),
    );
  });
});
