import { lstatSync, mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fnv1a32 } from '../../model/scheduling';

/** Overrides the daemon's folder (tests give each run its own). */
export const RUNTIME_DIR_ENV = 'TULA_DSR_RUNTIME_DIR';

/**
 * The per-user folder that holds the daemon's socket, lock and log. Only its owner may enter it, which is what
 * keeps other local users from sending the daemon work (Node cannot read a Unix socket peer's credentials).
 * Resolves to the folder, or to the reason it cannot be used.
 */
export function runtimeDir(env: NodeJS.ProcessEnv): { dir: string } | { problem: string } {
  const uid = process.getuid?.() ?? -1;
  const dir = env[RUNTIME_DIR_ENV] || (env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'tula-dsr') : join(tmpdir(), `tula-dsr-${uid}`));
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return { problem: `cannot create ${dir}: ${(error as NodeJS.ErrnoException).code}` };
  }
  const st = lstatSync(dir);
  if (!st.isDirectory()) return { problem: `${dir} is not a directory (a symlink is not accepted)` };
  if (st.uid !== uid) return { problem: `${dir} belongs to uid ${st.uid}, not ${uid}` };
  if (st.mode & 0o077) return { problem: `${dir} is open to other users (mode ${(st.mode & 0o777).toString(8)}); it must be 700` };
  return { dir };
}

/**
 * The daemon's code as files that every build rewrites (tsc emits every output anew, and the bundle script runs
 * after it) and every install writes anew (npm extracts each file, so its inode changes): one of them stands for all.
 * The bundle is what the daemon runs (see bundle-loader.ts), so a bundle made again on its own counts too.
 */
const CODE_FILES = ['agent/daemon/server.js', 'agent/daemon/protocol.js', 'agent/tula-dsr-agent.js', 'agent/cli.js', 'agent/runner.js', 'model/index.js'];

/**
 * Identifies the code a daemon runs: Node itself, the compiled agent and model, and the installed ssh2 and zod.
 * A rebuild or an upgrade gives a new socket name, so a client never talks to a daemon running older code
 * (the old one exits once idle). Every provisioner process computes it: a handful of stats, where listing and
 * stating every compiled file cost each one 20-40 ms of CPU.
 */
export function buildId(): string {
  const dist = dirname(dirname(__dirname));
  const files = CODE_FILES.map((f) => join(dist, f));
  for (const pkg of ['ssh2/package.json', 'zod/package.json']) {
    try {
      files.push(require.resolve(pkg));
    } catch {
      // resolved when the agent loads; a missing package fails there with a clear message
    }
  }
  let text = `${process.execPath}\0${process.version}\0`;
  for (const file of files) {
    const st = statSync(file, { throwIfNoEntry: false });
    text += `${file}\0${st?.size}\0${st?.mtimeMs}\0${st?.ino}\n`;
  }
  // Not sha256: loading node:crypto cost each provisioner about 7 ms of CPU, and this name only tells builds apart,
  // in a folder only its owner can enter. Two FNV-1a passes with different bases.
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  return hex(fnv1a32(text)) + hex(fnv1a32(text, 0x01000193));
}

export function socketPath(dir: string, id: string): string {
  return join(dir, `agent-${id}.sock`);
}
