/**
 * What tula-dsr keeps in /var/lib/tula-dsr on a host (the state file, the journal, the rollback snapshot of the
 * nft table, the loaded ruleset and its listing) holds the spec and client flow tuples: only root may read it.
 * Real sshd, real nft, real files on a lab host.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { STATE_DIR } from '../../agent/state';
import { unreadableStateMessage } from '../../agent/runner';
import { TASK_LINE, assertDistFresh, backendSpec, balancerSpec, expectNoStackTrace, run, runCli, sh, sleep, snapshot, writeSpec } from './helpers';

jest.setTimeout(30_000);

let lab: Lab;
let lb: LabHost;
let be1: LabHost;

beforeAll(async () => {
  assertDistFresh();
  lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }] });
  ({ lb, be1 } = lab.hosts);
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

/**
 * A balancer's state folder after a weight change (an incremental update), private: the folder 700, each file 600,
 * the update's rollback (its undo) and the generation record too.
 */
const PRIVATE = [
  `700 ${STATE_DIR}`,
  `600 ${STATE_DIR}/balancer.json`,
  `600 ${STATE_DIR}/netdev-tula_dsr.generation`,
  `600 ${STATE_DIR}/netdev-tula_dsr.listing`,
  `600 ${STATE_DIR}/netdev-tula_dsr.load.nft`,
  `600 ${STATE_DIR}/netdev-tula_dsr.undo.nft`,
  `600 ${STATE_DIR}/netdev-tula_dsr.update.nft`,
];

/** `mode path` of the state folder and of everything in it, sorted. */
const modes = async () => (await sh(lb, `find ${STATE_DIR} -printf '%m %p\\n' | sort -k2`)).trim().split('\n');

describe('state folder privacy', () => {
  test('GIVEN a fresh balancer WHEN applied and then applied with other weights THEN the folder is 700 and each file in it, the rollback snapshot too, is 600', async () => {
    expect((await run(spec([1, 1]), 'apply')).error).toBeUndefined();
    expect((await run(spec([1, 2]), 'apply')).error).toBeUndefined();

    expect(await modes()).toEqual(PRIVATE);
  });

  test('GIVEN a state folder left readable by all (755, files 644) WHEN apply runs with nothing else to change THEN it is made private, and the next run changes nothing', async () => {
    await sh(lb, `chmod 755 ${STATE_DIR} && chmod 644 ${STATE_DIR}/*`);

    const fixed = await run(spec([1, 2]), 'apply');

    expect(fixed.error).toBeUndefined();
    expect(TASK_LINE(fixed).filter((l) => !l.startsWith('ok: '))).toEqual([`changed: state folder ${STATE_DIR}`]);
    expect(fixed.tasks.find((t) => t.status === 'changed')!.detail).toBe(
      'mode 755 -> 700, its files readable by root only (it holds the spec and client flow tuples)',
    );
    expect(await modes()).toEqual(PRIVATE);
    expect((await run(spec([1, 2]), 'apply')).counts.changed).toBe(0);
  });
});

const BACKEND_STATE = `${STATE_DIR}/backend.json`;
const backend = (...vips: string[]) =>
  backendSpec(
    lab,
    be1,
    vips.map((ip) => ({ ip })),
  );
/** What JSON.parse says of the truncated file below, as the facts script reads it back (with a final newline). */
const TRUNCATED = '{"version": 1, "kind": "backend", "na';
const TRUNCATED_PROBLEM = 'it is not valid JSON (Bad control character in string literal in JSON at position 37)';

describe('an unreadable state file', () => {
  beforeAll(async () => {
    expect((await run(backend('10.99.7.20'), 'apply')).error).toBeUndefined();
  });

  /** Puts `content` in place of `path` for the duration of `test` and restores the good state file afterwards. */
  async function corrupt(path: string, content: string, test: () => Promise<void>): Promise<void> {
    await sh(be1, `cp -p ${BACKEND_STATE} /tmp/state.good && printf '%s' '${content}' > ${path}`);
    try {
      await test();
    } finally {
      await sh(be1, `mv -f /tmp/state.good ${BACKEND_STATE} && rm -f ${BACKEND_STATE}.journal`);
    }
  }

  test.each([
    ['truncated', TRUNCATED, TRUNCATED_PROBLEM],
    ['empty', '', 'it is empty (a write that never reached the disk?)'],
    ['foreign', '{"version": 3}', 'it is not a state file this tula-dsr can read (version: Invalid option: expected one of 1|2)'],
  ])('GIVEN a %s state file WHEN apply, remove and check run THEN each refuses with how to recover, and nothing changes', async (_what, content, problem) => {
    await corrupt(BACKEND_STATE, content, async () => {
      const before = await snapshot(be1);
      for (const mode of ['apply', 'remove', 'check'] as const) {
        const result = await run(backend('10.99.7.20', '10.99.7.21'), mode);
        expect(result.error).toEqual({ kind: 'state', message: unreadableStateMessage(BACKEND_STATE, problem) });
        expect(result.tasks).toEqual([]);
      }
      expect(await snapshot(be1)).toEqual(before);
    });
  });

  test('GIVEN an unreadable journal left by an interrupted run WHEN apply runs THEN it refuses, naming the journal', async () => {
    await corrupt(`${BACKEND_STATE}.journal`, '{"version": 1, "ki', async () => {
      const result = await run(backend('10.99.7.20', '10.99.7.21'), 'apply');
      expect(result.error?.message).toBe(
        unreadableStateMessage(`${BACKEND_STATE}.journal`, 'it is not valid JSON (Bad control character in string literal in JSON at position 18)'),
      );
    });
  });

  test('GIVEN a truncated state file WHEN the CLI applies THEN the user sees the file, the reason and the recovery, exit 1, no stack trace', async () => {
    await corrupt(BACKEND_STATE, TRUNCATED, async () => {
      const r = await runCli(['apply', '--spec', writeSpec(lab, backend('10.99.7.20'))]);
      expect(r.code).toBe(1);
      expectNoStackTrace(r.stdout + r.stderr);
      expect(r.stdout.split('\n')[0]).toBe(`failed: be1 ${unreadableStateMessage(BACKEND_STATE, TRUNCATED_PROBLEM)}`);
      expect(r.stdout).toContain(`(mv ${BACKEND_STATE} ${BACKEND_STATE}.broken)`);
    });
  });
});

describe('durable state writes', () => {
  test('GIVEN a change WHEN apply records it THEN the journal and the state file are each fsynced before their rename, and the folder after it', async () => {
    const sshdPid = (await sh(be1, 'cat /run/sshd.pid')).trim();
    const log = join(lab.dir, 'strace.log');
    const tracer = spawn('strace', ['-f', '-qq', '-e', 'trace=openat,fsync,fdatasync,rename,renameat,renameat2', '-o', log, '-p', sshdPid], {
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => tracer.once('exit', resolve));
    try {
      await sleep(500); // strace attaches
      expect((await run(backend('10.99.7.20', '10.99.7.22'), 'apply')).error).toBeUndefined();
    } finally {
      tracer.kill('SIGINT');
      await exited;
    }
    const calls = readFileSync(log, 'utf8').split('\n');
    /** Index of the first call at or after `from` that matches, or -1. */
    const find = (re: RegExp, from = 0) => calls.findIndex((l, i) => i >= from && re.test(l));
    /** Index of the first fsync of `path` (opened read-only, as `sync PATH` does) at or after `from`, or -1. */
    const fsyncOf = (path: string, from: number) => {
      const opened = find(new RegExp(`^\\d+ +openat\\(AT_FDCWD, "${path}", O_RDONLY.*= \\d+$`), from);
      if (opened < 0) return -1;
      const [, pid, fd] = /^(\d+) .* = (\d+)$/.exec(calls[opened])!;
      return find(new RegExp(`^${pid} +(fsync|fdatasync)\\(${fd}\\) += 0$`), opened);
    };
    for (const file of [`${BACKEND_STATE}.journal`, BACKEND_STATE]) {
      const tmp = `${file}.tula-tmp`;
      const renamed = find(new RegExp(`^\\d+ +rename\\w*\\(.*"${tmp}".*"${file}".* = 0$`));
      const tmpSynced = fsyncOf(tmp, 0);
      const folderSynced = fsyncOf(STATE_DIR, Math.max(renamed, 0));
      expect({ file, renamed: renamed >= 0 }).toEqual({ file, renamed: true });
      expect({ file, tmpSyncedBeforeRename: tmpSynced >= 0 && tmpSynced < renamed }).toEqual({ file, tmpSyncedBeforeRename: true });
      expect({ file, folderSyncedAfterRename: folderSynced > renamed }).toEqual({ file, folderSyncedAfterRename: true });
    }
  });
});
