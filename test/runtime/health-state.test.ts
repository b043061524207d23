/** The rise/fall state machine: `fall` failures in a row take a target down, `rise` successes bring it back. */
import { Health, HealthState, Thresholds, initialHealth, recordResult } from '../../runtime/health-state';

/** Feeds a sequence of results ('+' passed, '-' failed) and returns the health after each one and the transitions. */
function run(results: string, thresholds: Thresholds, start: HealthState = initialHealth(0)) {
  let state = start;
  const healths: Health[] = [];
  const changes: { at: number; to: Health }[] = [];
  [...results].forEach((r, i) => {
    const step = recordResult(state, r === '+', thresholds, i + 1);
    state = step.state;
    healths.push(state.health);
    if (step.changed) changes.push({ at: i + 1, to: step.changed });
  });
  return { state, healths: healths.map((h) => (h === 'up' ? 'U' : 'D')).join(''), changes };
}

test('GIVEN no saved state WHEN a target starts THEN it is up, since now, with no streak', () => {
  expect(initialHealth(1000)).toEqual({ health: 'up', since: 1000, streak: 0 });
});

test('GIVEN a saved down state WHEN a target starts THEN it is down since the saved time', () => {
  expect(initialHealth(1000, { health: 'down', since: 400 })).toEqual({ health: 'down', since: 400, streak: 0 });
});

test.each<[string, Thresholds, string, string]>([
  ['fall 3: two failures are not enough', { fall: 3, rise: 2 }, '--', 'UU'],
  ['fall 3: the third failure in a row takes it down', { fall: 3, rise: 2 }, '---', 'UUD'],
  ['fall 3: a success resets the count', { fall: 3, rise: 2 }, '--+--+--', 'UUUUUUUU'],
  ['rise 2: one success is not enough', { fall: 3, rise: 2 }, '---+', 'UUDD'],
  ['rise 2: the second success in a row brings it up', { fall: 3, rise: 2 }, '---++', 'UUDDU'],
  ['rise 2: a failure while down resets the count', { fall: 3, rise: 2 }, '---+-+-++', 'UUDDDDDDU'],
  ['fall 1 and rise 1 follow every result', { fall: 1, rise: 1 }, '-+-+', 'DUDU'],
  ['alternating results never flip fall 2 / rise 2', { fall: 2, rise: 2 }, '-+-+-+-+', 'UUUUUUUU'],
])('GIVEN %s WHEN results %s arrive THEN the health after each is %s', (_what, thresholds, results, healths) => {
  expect(run(results, thresholds).healths).toBe(healths);
});

test('GIVEN fall 3 and rise 2 WHEN a target fails and recovers THEN exactly two transitions are reported, with their times as since', () => {
  const { changes, state } = run('+---+-++++', { fall: 3, rise: 2 });
  expect(changes).toEqual([
    { at: 4, to: 'down' },
    { at: 8, to: 'up' },
  ]);
  expect(state).toEqual({ health: 'up', since: 8, streak: 0 });
});

test('GIVEN a saved down state WHEN rise successes arrive THEN it comes up (a restart does not resurrect it early)', () => {
  const { healths } = run('+++', { fall: 3, rise: 3 }, initialHealth(0, { health: 'down' }));
  expect(healths).toBe('DDU');
});
