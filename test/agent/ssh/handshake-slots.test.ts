import { MAX_CONCURRENT_HANDSHAKES, Slots, handshakeSlots } from '../../../agent/ssh/handshake-slots';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('handshake slots', () => {
  test('GIVEN 3 slots WHEN 10 set-ups start at once THEN at most 3 run at a time, and every one runs', async () => {
    const slots = new Slots(3);
    let running = 0;
    let most = 0;
    const done: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const release = await slots.take();
        running++;
        most = Math.max(most, running);
        await tick();
        running--;
        done.push(i);
        release();
      }),
    );
    expect(most).toBe(3);
    expect(done.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test('GIVEN a slot given back twice WHEN more set-ups wait THEN only one of them gets it', async () => {
    const slots = new Slots(1);
    const release = await slots.take();
    const started: string[] = [];
    const a = slots.take().then((r) => (started.push('a'), r));
    const b = slots.take().then((r) => (started.push('b'), r));
    release();
    release();
    await tick();
    expect(started).toEqual(['a']);
    (await a)();
    await b;
    expect(started).toEqual(['a', 'b']);
  });

  test('GIVEN the process-wide slots WHEN as many set-ups as allowed start THEN one more waits for a slot', async () => {
    const releases = await Promise.all(Array.from({ length: MAX_CONCURRENT_HANDSHAKES }, () => handshakeSlots.take()));
    let extra = false;
    const waiting = handshakeSlots.take().then((r) => ((extra = true), r));
    await tick();
    expect(extra).toBe(false);
    releases[0]();
    (await waiting)();
    expect(extra).toBe(true);
    releases.slice(1).forEach((r) => r());
  });
});
