/**
 * Concurrent applies on one host. Real CLI processes run at once; the host lock (flock on
 * /run/tula-dsr.lock) is held from inside the host until every process has gathered its facts and sent its apply
 * script, so that they really contend: one applies, the others find the state file changed under them (stale
 * facts), gather facts again and converge. The end state is consistent and a re-run reports changed=0.
 */
import { createHash } from 'node:crypto';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { BackgroundProcess, spawnBackground, waitFor } from '../../lab/exec';
import { HostStateSchema } from '../../agent/state';
import { CLI, addresses, assertDistFresh, backendSpec, leftovers, run, runCli, sh, writeSpec } from './helpers';

jest.setTimeout(40_000);

const LOCK = '/run/tula-dsr.lock';
const STALE = 'another run changed the host meanwhile; gathering facts again';

let lab: Lab;

beforeAll(async () => {
  assertDistFresh();
  lab = await createLab({ hosts: [{ name: 'be1' }, { name: 'be2' }, { name: 'be3' }] });
});

afterAll(async () => {
  await lab?.teardown();
});

/** Holds the host's tula-dsr lock from inside the host until released (`flock -o`: only flock itself holds it). */
async function holdLock(host: LabHost): Promise<BackgroundProcess> {
  const holder = host.spawn(['flock', '-o', LOCK, 'sleep', '120']);
  const held = await waitFor(async () => (await host.exec(['flock', '-n', LOCK, 'true'])).code !== 0, 5000, 20);
  if (!held) throw new Error(`could not take ${LOCK} on ${host.name}: ${holder.stderrText()}`);
  return holder;
}

interface Finished {
  code: number;
  stderr: string;
  json: { results: { counts: { changed: number; failed: number }; generation: string; roundTrips: number; error?: unknown }[] };
}

/** Starts CLI applies, waits until each is blocked on the lock with its apply script sent, then releases the lock. */
async function contend(host: LabHost, specFiles: string[]): Promise<Finished[]> {
  const holder = await holdLock(host);
  const procs = specFiles.map((f) => spawnBackground(['node', CLI, 'apply', '--spec', f, '--json']));
  const blocked = await waitFor(() => procs.every((p) => /applying \d+ change/.test(p.stderrText()) || !p.isRunning()), 20_000, 20);
  await holder.stop('SIGKILL');
  const finished = await Promise.all(
    procs.map(async (p) => {
      const { code } = await p.exited;
      return { code: code ?? -1, stderr: p.stderrText(), json: JSON.parse(p.stdoutText()) as Finished['json'] };
    }),
  );
  if (!blocked) throw new Error(`not every run reached the lock:\n${finished.map((f) => f.stderr).join('\n---\n')}`);
  return finished;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('concurrent applies on one host', () => {
  test('GIVEN two CLI applies of the same spec at once WHEN they contend for the host lock THEN one applies, the other converges with changed=0', async () => {
    const be = lab.hosts.be1;
    const file = writeSpec(lab, backendSpec(lab, be, [{ ip: '10.99.6.10' }]));

    const [a, b] = await contend(be, [file, file]);

    expect([a.code, b.code]).toEqual([0, 0]);
    const changed = [a, b].map((r) => r.json.results[0].counts.changed).sort();
    expect(changed).toEqual([0, 7]);
    // the loser's facts went stale under the lock: it gathered them again (facts, stale apply, facts = 3 round trips)
    const loser = [a, b].find((r) => r.json.results[0].counts.changed === 0)!;
    expect(loser.stderr).toContain(`tula-dsr: be1: ${STALE}\n`);
    expect(loser.json.results[0].roundTrips).toBe(3);
    // consistent end state, and a re-run changes nothing
    expect(await addresses(be, 'lo')).toEqual(['127.0.0.1/8', '10.99.6.10/32']);
    expect(await leftovers(be)).toEqual([]);
    const again = await runCli(['apply', '--spec', file]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^be1 +: ok=8 changed=0 failed=0 skipped=0 /m);
  });

  test('GIVEN two CLI applies of different specs at once WHEN they contend THEN both succeed and the host carries exactly the last one', async () => {
    const be = lab.hosts.be2;
    const specA = JSON.stringify(backendSpec(lab, be, [{ ip: '10.99.6.20' }]));
    const specB = JSON.stringify(backendSpec(lab, be, [{ ip: '10.99.6.21' }]));
    const files = [writeSpec(lab, specA), writeSpec(lab, specB)];

    const results = await contend(be, files);

    expect(results.map((r) => r.code)).toEqual([0, 0]);
    expect(results.map((r) => r.json.results[0].counts.failed)).toEqual([0, 0]);
    const state = HostStateSchema.parse(JSON.parse(await sh(be, 'cat /var/lib/tula-dsr/backend.json')));
    const winner = state.generation === sha256(specA) ? 0 : 1;
    expect(state.generation).toBe(sha256([specA, specB][winner]));
    // the winner's VIP is live; the loser's, applied first, is still on lo but recorded as retiring, never orphaned
    const [mine, theirs] = winner === 0 ? ['10.99.6.20', '10.99.6.21'] : ['10.99.6.21', '10.99.6.20'];
    expect(state.addresses.map((a) => `${a.ip} ${a.retiredAt ? 'retiring' : 'live'}`)).toEqual([`${mine} live`, `${theirs} retiring`]);
    expect((await addresses(be, 'lo')).sort()).toEqual(['10.99.6.20/32', '10.99.6.21/32', '127.0.0.1/8']);
    expect(await sh(be, 'grep -c "addr replace" /etc/tula-dsr/backend-up.sh')).toBe('1\n');
    expect(await sh(be, 'grep "addr replace" /etc/tula-dsr/backend-up.sh')).toBe(`\t'addr replace ${mine}/32 dev lo' \\\n`);
    // a re-run of the live spec changes nothing; check agrees
    expect((await runCli(['apply', '--spec', files[winner]])).stdout).toMatch(/^be2 +: ok=\d+ changed=0 failed=0 skipped=0 /m);
    expect((await runCli(['check', '--spec', files[winner]])).code).toBe(0);
    expect(await leftovers(be)).toEqual([]);
  });

  test('GIVEN three in-process runs blocked on the lock WHEN it is released THEN exactly one applies and two retry on stale facts', async () => {
    const be = lab.hosts.be3;
    const spec = backendSpec(lab, be, [{ ip: '10.99.6.30' }, { ip: '10.99.6.31' }]);
    const holder = await holdLock(be);
    const progress: string[][] = [[], [], []];
    const runs = progress.map((lines) => run(spec, 'apply', { progress: (l) => lines.push(l) }));
    expect(await waitFor(() => progress.every((p) => p.some((l) => /applying 8 change/.test(l))), 15_000, 10)).toBe(true);
    await holder.stop('SIGKILL');

    const results = await Promise.all(runs);

    expect(results.map((r) => r.error)).toEqual([undefined, undefined, undefined]);
    expect(results.map((r) => r.counts.changed).sort()).toEqual([0, 0, 8]);
    expect(progress.filter((p) => p.includes(`be3: ${STALE}`))).toHaveLength(2);
    expect((await run(spec, 'apply')).counts.changed).toBe(0);
  });
});
