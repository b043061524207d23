/**
 * The agent works while the host runs its facts script: runHost prepares the part of its plan that needs no facts
 * (prepareHostPlan) in `onWritten` of that run. This holds only if the script is on its way to the host before
 * onWritten is called, on a new channel and on the shell a run left waiting; a fault there must not fail the run.
 * Real sshd in a lab namespace.
 */
import { existsSync } from 'node:fs';
import { connect } from '../../agent/ssh/connection';
import * as prepare from '../../agent/tasks/prepare';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { addresses, backendSpec, run } from './helpers';

jest.setTimeout(30_000);

let lab: Lab;
let be1: LabHost;

beforeAll(async () => {
  lab = await createLab({ hosts: [{ name: 'be1' }] });
  ({ be1 } = lab.hosts);
});

afterAll(async () => {
  await lab?.teardown();
});

afterEach(() => jest.restoreAllMocks());

/**
 * Holds the agent's only thread (no socket is read or written meanwhile) until the host has created `file`, for at
 * most 5 s: the host can create it only if the script had left the agent before.
 */
function blockUntilCreated(file: string): boolean {
  const until = Date.now() + 5000;
  while (Date.now() < until) if (existsSync(file)) return true;
  return false;
}

describe('onWritten of a run', () => {
  test('GIVEN a run on a new channel and one on the waiting shell WHEN onWritten blocks until the script has begun THEN it had begun, and the output comes whole', async () => {
    const connection = await connect(be1.target());
    try {
      for (const which of ['new channel', 'waiting shell']) {
        const marker = `/run/tula-overlap-${which.replace(' ', '-')}`;
        const seen: boolean[] = [];

        const result = await connection.run(`: > ${marker}; seq 1 20000`, { onWritten: () => seen.push(blockUntilCreated(be1.path(marker))) });

        expect({ which, seen }).toEqual({ which, seen: [true] });
        expect({ which, code: result.code, lines: result.stdout.split('\n').length, last: result.stdout.slice(-7) }).toEqual({
          which,
          code: 0,
          lines: 20001,
          last: '\n20000\n',
        });
        await be1.exec(['rm', '-f', marker]);
      }
      expect(connection.roundTrips).toBe(2);
    } finally {
      await connection.close();
    }
  });
});

describe('the plan prepared while the facts run', () => {
  const spec = () => backendSpec(lab, be1, [{ ip: '10.99.7.1' }, { ip: '10.99.7.2', port: 443 }]);

  test('GIVEN a backend WHEN apply, check and remove run THEN apply and check prepare their plan once each, and remove does not', async () => {
    const calls = jest.spyOn(prepare, 'prepareHostPlan');

    const applied = await run(spec(), 'apply');
    expect(applied.error).toBeUndefined();
    expect(calls).toHaveBeenCalledTimes(1);
    const checked = await run(spec(), 'check');
    expect(checked.counts).toMatchObject({ changed: 0, failed: 0 });
    expect(calls).toHaveBeenCalledTimes(2);
    const removed = await run(spec(), 'remove');
    expect(removed.error).toBeUndefined();
    expect(calls).toHaveBeenCalledTimes(2);
  });

  test('GIVEN preparing the plan fails WHEN apply runs THEN the plan is made after the facts instead, and the host converges', async () => {
    const calls = jest.spyOn(prepare, 'prepareHostPlan').mockImplementation(() => {
      throw new Error('a fault while the facts ran');
    });

    const applied = await run(spec(), 'apply');

    expect(calls).toHaveBeenCalledTimes(1);
    expect(applied.error).toBeUndefined();
    expect(applied.counts.changed).toBeGreaterThan(0);
    expect(await addresses(be1, 'lo')).toEqual(expect.arrayContaining(['10.99.7.1/32', '10.99.7.2/32']));
    const again = await run(spec(), 'apply');
    expect(again.counts).toMatchObject({ changed: 0, failed: 0 });
    expect((await run(spec(), 'remove')).error).toBeUndefined();
  });
});
