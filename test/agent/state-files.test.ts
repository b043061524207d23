/**
 * What tula-dsr keeps in /var/lib/tula-dsr on a host (the state file, the journal, the rollback snapshot of the
 * nft table, the loaded ruleset and its listing) holds the spec and client flow tuples: only root may read it.
 * Real sshd, real nft, real files on a lab host.
 */
import { createLab, Lab, LabHost } from '../../lab/topology';
import { STATE_DIR } from '../../agent/state';
import { TASK_LINE, balancerSpec, run, sh } from './helpers';

jest.setTimeout(30_000);

let lab: Lab;
let lb: LabHost;

beforeAll(async () => {
  lab = await createLab({ hosts: [{ name: 'lb' }] });
  ({ lb } = lab.hosts);
});

afterAll(async () => {
  await lab?.teardown();
});

/** A balancer with one VIP whose two backends have explicit MACs (no neighbour resolution needed). */
const spec = (weights: [number, number]) =>
  balancerSpec(lab, lb, [
    {
      name: 'web',
      ip: '10.99.7.10',
      port: 80,
      backends: [
        { name: 'a', ip: lab.subnet.replace(/0\/24$/, '150'), mac: '52:54:00:00:07:01', weight: weights[0] },
        { name: 'b', ip: lab.subnet.replace(/0\/24$/, '151'), mac: '52:54:00:00:07:02', weight: weights[1] },
      ],
    },
  ]);

/** `mode path` of the state folder and of everything in it, sorted. */
const modes = async () => (await sh(lb, `find ${STATE_DIR} -printf '%m %p\\n' | sort -k2`)).trim().split('\n');

describe('state folder privacy', () => {
  test('GIVEN a fresh balancer WHEN applied and then applied with other weights THEN the folder is 700 and each file in it, the rollback snapshot too, is 600', async () => {
    expect((await run(spec([1, 1]), 'apply')).error).toBeUndefined();
    expect((await run(spec([1, 2]), 'apply')).error).toBeUndefined();

    expect(await modes()).toEqual([
      `700 ${STATE_DIR}`,
      `600 ${STATE_DIR}/balancer.json`,
      `600 ${STATE_DIR}/netdev-tula_dsr.before.nft`,
      `600 ${STATE_DIR}/netdev-tula_dsr.listing`,
      `600 ${STATE_DIR}/netdev-tula_dsr.load.nft`,
    ]);
  });

  test('GIVEN a state folder left readable by all (755, files 644) WHEN apply runs with nothing else to change THEN it is made private, and the next run changes nothing', async () => {
    await sh(lb, `chmod 755 ${STATE_DIR} && chmod 644 ${STATE_DIR}/*`);

    const fixed = await run(spec([1, 2]), 'apply');

    expect(fixed.error).toBeUndefined();
    expect(TASK_LINE(fixed).filter((l) => !l.startsWith('ok: '))).toEqual([`changed: state folder ${STATE_DIR}`]);
    expect(fixed.tasks.find((t) => t.status === 'changed')!.detail).toBe(
      'mode 755 -> 700, its files readable by root only (it holds the spec and client flow tuples)',
    );
    expect(await modes()).toEqual([
      `700 ${STATE_DIR}`,
      `600 ${STATE_DIR}/balancer.json`,
      `600 ${STATE_DIR}/netdev-tula_dsr.before.nft`,
      `600 ${STATE_DIR}/netdev-tula_dsr.listing`,
      `600 ${STATE_DIR}/netdev-tula_dsr.load.nft`,
    ]);
    expect((await run(spec([1, 2]), 'apply')).counts.changed).toBe(0);
  });
});
