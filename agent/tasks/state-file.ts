import { ensureDirCommand, removeFilesCommand, renderCommand } from '../../model/shell';
import { HostState, STATE_DIR, journalPath } from '../state';
import { Step, Task, changed, ok } from './task';
import { cmd, knownContent, removeDirsCommands, writeContentCommand } from './steps';
import type { HostFacts } from '../facts/gather';

/**
 * The state file's text: a line per key, and a line per array element in compact JSON, so that a change to a few
 * addresses is a few lines of its line patch. 10,000 addresses take 10,000 lines (JSON.stringify's indented form
 * took 50,000, and a third more bytes), which every hash, diff and patch of the file reads. Objects stay indented:
 * the facts find `"rulesetHash": "…"` and `"listingHash": "…"` on lines of their own.
 */
export function stateFileText(state: HostState): string {
  return `${stateJson(state, '')}\n`;
}

function stateJson(value: unknown, indent: string): string {
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return `[\n${value.map((v) => `${indent}  ${JSON.stringify(v) ?? 'null'}`).join(',\n')}\n${indent}]`;
  }
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const entries = Object.entries(value).filter(([, v]) => v !== undefined);
  if (!entries.length) return '{}';
  return `{\n${entries.map(([k, v]) => `${indent}  ${JSON.stringify(k)}: ${stateJson(v, `${indent}  `)}`).join(',\n')}\n${indent}}`;
}

/**
 * The state file is written last, once every other step succeeded. Placeholders in its JSON are replaced by
 * values only the host knows after the run (the nft listing hashes), computed in the same script. `nftChanged`: a
 * table was (re)loaded, so the recorded listing hashes must be refreshed even when nothing else changed.
 */
export function stateTask(path: string, next: HostState, text: string, facts: HostFacts, substitutions: Record<string, string>, nftChanged: boolean): Task {
  const previous = facts.state;
  const same = previous && JSON.stringify({ ...previous, nft: {} }) === JSON.stringify({ ...next, nft: {} });
  if (same && !nftChanged && !facts.journalPending) return ok(`state ${path}`, `generation ${next.generation.slice(0, 12)}`);
  const sedArgs = Object.entries(substitutions).map(([placeholder, command]) => `-e "s/${placeholder}/$(${command})/"`);
  const base = facts.stateFile && knownContent(facts.stateFile);
  const write = durableWrite(path, (tmp) =>
    [writeContentCommand(tmp, text, base), ...(sedArgs.length ? [`sed -i ${sedArgs.join(' ')} ${renderCommand([tmp])}`] : [])].join(' && '),
  );
  // The undo puts back a copy of the file taken on the host (the one the facts read: the script checks its fingerprint
  // first), not its text carried in the script, which is a megabyte for 10,000 VIPs; the copy goes once the run has
  // succeeded (see finishHostPlan). With a journal pending, what to put back is the file merged with the journal,
  // which only the text holds.
  const bak = `${path}.tula-bak`;
  const copied = previous !== null && !facts.journalPending;
  const run = copied
    ? [removeFilesCommand([bak]), cmd('cp', '-p', path, `${bak}.tula-tmp`), cmd('mv', '-f', `${bak}.tula-tmp`, bak), write].join(' && ')
    : write;
  const undo = copied
    ? `${cmd('rm', '-f', `${path}.tula-tmp`)}; if ${cmd('test', '-e', bak)}; then ${cmd('mv', '-f', bak, path)} && ${fsync(STATE_DIR)}; fi`
    : previous
      ? durableWrite(path, (tmp) => writeContentCommand(tmp, stateFileText(previous)))
      : cmd('rm', '-f', path);
  const detail = `generation ${next.generation.slice(0, 12)} recorded${facts.journalPending ? ', with what an interrupted run had begun' : ''}`;
  // the listing hashes come from command substitutions inside the pipeline: their errors show only on stderr
  return changed(`state ${path}`, detail, [{ run, undo, stderr: 'failure' }]);
}

/**
 * The state folder holds the spec and, in rollback snapshots, client flow tuples: only root may read it. Runs
 * create it private (umask 077); this tightens one left open (by an older tula-dsr, or by hand), with everything
 * in it. No task when it is private or absent.
 */
export function stateDirTasks(facts: HostFacts): Task[] {
  if (facts.stateDirMode === null || facts.stateDirMode === '700') return [];
  return [
    changed(`state folder ${STATE_DIR}`, `mode ${facts.stateDirMode} -> 700, its files readable by root only (it holds the spec and client flow tuples)`, [
      { run: cmd('chmod', '-R', 'go-rwx', STATE_DIR), undo: ':' },
    ]),
  ];
}

export function removeStateStep(path: string): { run: string; undo: string } {
  return { run: cmd('rm', '-f', path), undo: ':' };
}

/** Writes the journal (see journalPath) atomically; the run's first step whenever it changes anything. */
export function journalStep(path: string, journal: HostState, newDirs: readonly string[]): Step {
  const file = journalPath(path);
  const text = JSON.stringify(journal) + '\n';
  // The journal's undo runs last in a rollback: the folders this run created (for the journal itself, for files) go
  // too, so that a failed first apply leaves the host byte for byte as it was.
  return { run: durableWrite(file, (tmp) => writeContentCommand(tmp, text)), undo: [cmd('rm', '-f', file), ...removeDirsCommands(newDirs)].join('; ') };
}

/** fsync of one file or folder; `sync` without arguments (everything) where sync takes none (old busybox). */
const fsync = (path: string) => `{ ${cmd('sync', path)} 2>/dev/null || sync; }`;

/**
 * Shell that replaces a file in STATE_DIR with what `write` puts in the temp file it is given, so that a crash or power loss leaves the old
 * content or the new, never an empty file (which the next run would have to refuse): a temp file, fsynced before
 * the rename, and the folder fsynced after it.
 */
export function durableWrite(path: string, write: (tmp: string) => string): string {
  const tmp = `${path}.tula-tmp`;
  return [ensureDirCommand(STATE_DIR), write(tmp), fsync(tmp), cmd('mv', '-f', tmp, path), fsync(STATE_DIR)].join(' && ');
}
