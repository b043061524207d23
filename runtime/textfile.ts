import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { renderPrometheus } from '../model/stats-prometheus';
import type { StatsSnapshot } from '../model/stats';
import { DEFAULT_TEXTFILE_PATH } from '../model/stats-textfile';

export { DEFAULT_TEXTFILE_PATH };

/**
 * Writes the snapshot for node_exporter's textfile collector, atomically: a temp file in the same folder (named
 * without `.prom`, so the collector never reads it half-written), synced, then renamed over `path`. The folder must
 * exist: it is node_exporter's to create, and a missing one is reported with its path instead of created.
 */
export function writeStatsTextfile(snapshot: StatsSnapshot, path: string = DEFAULT_TEXTFILE_PATH): void {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fd: number;
  try {
    fd = openSync(temp, 'w', 0o644);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? `the folder ${dirname(path)} does not exist (is node_exporter's textfile collector set up?)` : (error as Error).message;
    throw new Error(`cannot write the statistics textfile ${path}: ${why}`, { cause: error });
  }
  let open = true;
  try {
    // node_exporter runs as its own user: readable by all, whatever umask the runtime was started with
    fchmodSync(fd, 0o644);
    writeSync(fd, renderPrometheus(snapshot));
    fsyncSync(fd);
    closeSync(fd);
    open = false;
    renameSync(temp, path);
  } catch (error) {
    if (open) closeSync(fd);
    try {
      unlinkSync(temp);
    } catch {
      /* never created or renamed already */
    }
    throw new Error(`cannot write the statistics textfile ${path}: ${(error as Error).message}`, { cause: error });
  }
}
