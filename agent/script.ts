import { renderCommand, sha256AssignCommand } from '../model/shell';
import { LOCK_FILE } from './state';
import { SECTION_MARKER, parseSections } from '../model/sections';
import type { Step, Task } from './tasks/task';
import { SCRIPT_UMASK } from './tasks/steps';

/** Where each step's stderr goes: one file, as only the run holding LOCK_FILE writes it. */
export const ERR_FILE = `${LOCK_FILE}.err`;

/**
 * The apply script runs every step of every changed task in one round trip, under a host-wide flock. It first
 * checks that the state file is still the one the facts saw (another apply may have run meanwhile; then the
 * runner gathers facts again). A step fails on a non-zero exit code (or, for steps that say so, on stderr output);
 * then the undo of the failed step (unless it is all-or-nothing) and of every completed step runs in reverse order,
 * so the host is left as it was. An undo that fails is reported. Stderr output of a step that worked is a warning.
 */
export interface ApplyScript {
  readonly script: string;
  /** For step number i (1-based), the index of the task it belongs to. */
  readonly owners: readonly number[];
}

export const STALE_FACTS_EXIT = 75;
export const LOCK_TIMEOUT_EXIT = 76;

/** The shell that runs step `n`: its fragment, then the verdict on its exit status and stderr. */
function stepBody(step: Step, n: number): string {
  const firstUndo = step.allOrNothing ? n - 1 : n;
  const failed = step.stderr === 'failure' ? '[ $rc -ne 0 ] || [ -s "$err" ]' : '[ $rc -ne 0 ]';
  const warned = step.stderr === 'failure' ? '' : ` if [ -s "$err" ]; then say warning ${n}; fi;`;
  // A subshell: a step that ends its shell (`exit`) fails as itself, and the script goes on to roll back.
  return `( ${step.run} ) >/dev/null 2>"$err"; rc=$?; if ${failed}; then fail ${n} $rc ${firstUndo}; fi;${warned} echo '${SECTION_MARKER} done ${n}'`;
}

export function renderApplyScript(tasks: readonly Task[], statePath: string, fingerprint: string, finalCommands: readonly string[] = []): ApplyScript {
  const owners: number[] = [];
  const lines = [
    'export LC_ALL=C',
    // A lost connection (sshd or the client killed, network gone) must not stop the script between a step and
    // the next: without this, the first marker written to the dead channel kills sh with SIGPIPE, leaving a
    // half-applied host whose changed sysctls the next run would record as the "original" values.
    "trap '' HUP PIPE",
    // Private by default: the state folder holds the spec and, in rollback snapshots, client flow tuples. Files
    // elsewhere get their mode explicitly (writeFileStep).
    `umask ${SCRIPT_UMASK}`,
    `exec 9>>${renderCommand([LOCK_FILE])} || exit ${LOCK_TIMEOUT_EXIT}`,
    `flock -w 120 9 || { echo '${SECTION_MARKER} lock-timeout'; exit ${LOCK_TIMEOUT_EXIT}; }`,
    `${sha256AssignCommand('cur', statePath)}; [ -n "$cur" ] || cur=none`,
    `[ "$cur" = ${renderCommand([fingerprint])} ] || { echo '${SECTION_MARKER} stale-facts'; exit ${STALE_FACTS_EXIT}; }`,
    // under the lock, this run is the only one using the file: no mktemp process
    `err=${renderCommand([ERR_FILE])}; : > "$err" || exit 1`,
  ];
  const bodies: string[] = [];
  tasks.forEach((task, taskIndex) => {
    for (const step of task.steps) {
      owners.push(taskIndex);
      const n = owners.length;
      lines.push(`u_${n}() { ${step.undo}; }`);
      bodies.push(stepBody(step, n));
    }
  });
  lines.push(
    // `say KIND N`: a marker line, then $err's lines prefixed with '|', then an empty line
    `say() { echo "${SECTION_MARKER} $1 $2"; sed 's/^/|/' "$err"; echo; }`,
    // `fail N RC FIRST`: step N failed with RC; undo steps FIRST down to 1, reporting each undo that fails
    'fail() {',
    `  echo "${SECTION_MARKER} failed $1 $2"; sed 's/^/|/' "$err"; echo`,
    '  i=$3; while [ "$i" -ge 1 ]; do "u_$i" >/dev/null 2>"$err" || say undo-failed "$i"; i=$(( i - 1 )); done',
    '  : > "$err"; exit 1',
    '}',
    ...bodies,
    ...finalCommands,
    // emptied, not removed: it stays beside the lock file as the lock file stays, and `rm` is one process more per
    // apply on every host
    ': > "$err"',
    `echo '${SECTION_MARKER} end'`,
  );
  return { script: lines.join('\n') + '\n', owners };
}

export interface ApplyOutcome {
  readonly completedSteps: number;
  readonly failure?: { readonly step: number; readonly exitCode: number; readonly stderr: string };
  /** Steps that worked but wrote to stderr: step number → the text. */
  readonly warnings: ReadonlyMap<number, string>;
  /** Undos that failed during a rollback: step number → their stderr. */
  readonly undoFailures: ReadonlyMap<number, string>;
  readonly staleFacts: boolean;
  readonly lockTimeout: boolean;
  readonly finished: boolean;
  readonly sections: Map<string, string>;
}

export function parseApplyOutput(stdout: string): ApplyOutcome {
  let completed = 0;
  let failure: ApplyOutcome['failure'];
  const warnings = new Map<number, string>();
  const undoFailures = new Map<number, string>();
  const lines = stdout.split('\n');
  /** The '|' lines that follow line i, joined. */
  const textAfter = (i: number) => {
    const text: string[] = [];
    for (const next of lines.slice(i + 1)) {
      if (!next.startsWith('|')) break;
      text.push(next.slice(1));
    }
    return text.join('\n').trim();
  };
  const marker = new RegExp(`^${SECTION_MARKER} (done|failed|warning|undo-failed) (\\d+)(?: (\\d+))?$`);
  lines.forEach((line, i) => {
    const m = marker.exec(line);
    if (!m) return;
    const step = Number(m[2]);
    if (m[1] === 'done') completed = Math.max(completed, step);
    else if (m[1] === 'failed') failure = { step, exitCode: Number(m[3]), stderr: textAfter(i) };
    else if (m[1] === 'warning') warnings.set(step, textAfter(i));
    else undoFailures.set(step, textAfter(i));
  });
  return {
    completedSteps: completed,
    failure,
    warnings,
    undoFailures,
    staleFacts: stdout.includes(`${SECTION_MARKER} stale-facts`),
    lockTimeout: stdout.includes(`${SECTION_MARKER} lock-timeout`),
    finished: stdout.includes(`${SECTION_MARKER} end`),
    sections: parseSections(stdout),
  };
}
