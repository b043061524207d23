import { renderCommand } from '../model/shell';
import { LOCK_FILE } from './state';
import { SECTION_MARKER, parseSections } from './facts/sections';
import type { Task } from './tasks/task';

/**
 * The apply script runs every step of every changed task in one round trip, under a host-wide flock. It first
 * checks that the state file is still the one the facts saw (another apply may have run meanwhile; then the
 * runner gathers facts again). A step fails on a non-zero exit code or on any stderr output; then the undo of
 * every completed step runs in reverse order, so the host is left as it was.
 */
export interface ApplyScript {
  readonly script: string;
  /** For step number i (1-based), the index of the task it belongs to. */
  readonly owners: readonly number[];
}

export const STALE_FACTS_EXIT = 75;
export const LOCK_TIMEOUT_EXIT = 76;

export function renderApplyScript(tasks: readonly Task[], statePath: string, fingerprint: string, finalCommands: readonly string[] = []): ApplyScript {
  const owners: number[] = [];
  const lines = [
    'export LC_ALL=C',
    // A lost connection (sshd or the client killed, network gone) must not stop the script between a step and
    // the next: without this, the first marker written to the dead channel kills sh with SIGPIPE, leaving a
    // half-applied host whose changed sysctls the next run would record as the "original" values.
    "trap '' HUP PIPE",
    // Private by default: the state folder holds the spec and, in rollback snapshots, client flow tuples. Files
    // elsewhere get their mode set explicitly (writeFileStep).
    'umask 077',
    `exec 9>>${renderCommand([LOCK_FILE])} || exit ${LOCK_TIMEOUT_EXIT}`,
    `flock -w 120 9 || { echo '${SECTION_MARKER} lock-timeout'; exit ${LOCK_TIMEOUT_EXIT}; }`,
    `cur=$(sha256sum ${renderCommand([statePath])} 2>/dev/null | cut -c1-64); [ -n "$cur" ] || cur=none`,
    `[ "$cur" = ${renderCommand([fingerprint])} ] || { echo '${SECTION_MARKER} stale-facts'; exit ${STALE_FACTS_EXIT}; }`,
    'err=$(mktemp) || exit 1',
  ];
  const bodies: string[] = [];
  tasks.forEach((task, taskIndex) => {
    for (const step of task.steps) {
      owners.push(taskIndex);
      const n = owners.length;
      lines.push(`u_${n}() { ${step.undo}; }`);
      bodies.push(`{ ${step.run}; } >/dev/null 2>"$err"; rc=$?; if [ $rc -ne 0 ] || [ -s "$err" ]; then fail ${n} $rc; fi; echo '${SECTION_MARKER} done ${n}'`);
    }
  });
  lines.push(
    'fail() {',
    `  echo "${SECTION_MARKER} failed $1 $2"`,
    `  sed 's/^/|/' "$err"; echo`,
    '  i=$(( $1 - 1 )); while [ "$i" -ge 1 ]; do "u_$i" >/dev/null 2>&1; i=$(( i - 1 )); done',
    '  rm -f "$err"; exit 1',
    '}',
    ...bodies,
    ...finalCommands,
    'rm -f "$err"',
    `echo '${SECTION_MARKER} end'`,
  );
  return { script: lines.join('\n') + '\n', owners };
}

export interface ApplyOutcome {
  readonly completedSteps: number;
  readonly failure?: { readonly step: number; readonly exitCode: number; readonly stderr: string };
  readonly staleFacts: boolean;
  readonly lockTimeout: boolean;
  readonly finished: boolean;
  readonly sections: Map<string, string>;
}

export function parseApplyOutput(stdout: string): ApplyOutcome {
  let completed = 0;
  let failure: ApplyOutcome['failure'];
  const lines = stdout.split('\n');
  lines.forEach((line, i) => {
    const done = new RegExp(`^${SECTION_MARKER} done (\\d+)$`).exec(line);
    if (done) completed = Math.max(completed, Number(done[1]));
    const fail = new RegExp(`^${SECTION_MARKER} failed (\\d+) (\\d+)$`).exec(line);
    if (fail) {
      const stderr: string[] = [];
      for (const next of lines.slice(i + 1)) {
        if (!next.startsWith('|')) break;
        stderr.push(next.slice(1));
      }
      failure = { step: Number(fail[1]), exitCode: Number(fail[2]), stderr: stderr.join('\n').trim() };
    }
  });
  return {
    completedSteps: completed,
    failure,
    staleFacts: stdout.includes(`${SECTION_MARKER} stale-facts`),
    lockTimeout: stdout.includes(`${SECTION_MARKER} lock-timeout`),
    finished: stdout.includes(`${SECTION_MARKER} end`),
    sections: parseSections(stdout),
  };
}
