import { lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { sha256Hex } from '../../model/digest';
import { PATCH_MIN_BYTES } from '../tasks/steps';
import type { FileFact } from './parsers';

/** Where the agent keeps the large files it last saw on each host; `off` turns the cache off. */
export const CACHE_DIR_ENV = 'TULA_DSR_CACHE_DIR';

/**
 * The controller-side copy of each host's large files (its ruleset, boot script and state file: a megabyte each for
 * 10,000 VIPs), so that the facts need bring back only their hashes. A copy is used only when the host's file
 * hashes the same, so a stale, lost or tampered copy costs a full transfer, never a wrong plan. The folder is the
 * user's own (mode 700): the state file names the host's addresses.
 */
export interface FileCache {
  /** The copies this cache holds for `paths` (each checked against its own hash). */
  read(paths: readonly string[]): Record<string, FileFact>;
  /** Keeps these texts as what the host now holds; small ones are not kept (they travel whole anyway). */
  write(files: readonly { readonly path: string; readonly content: string }[]): void;
  /** Forgets the host (after a remove, which leaves none of these files on it). */
  clear(): void;
}

/** The cache root from the environment: `$TULA_DSR_CACHE_DIR`, else `$XDG_CACHE_HOME/tula-dsr`, else `~/.cache/tula-dsr`. */
export function cacheRoot(env: NodeJS.ProcessEnv): string | null {
  const set = env[CACHE_DIR_ENV];
  if (set === 'off') return null;
  if (set) return set;
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'tula-dsr');
}

/** Whether `dir` is a folder of this user's that no one else may enter; with `create`, made so if missing. */
function privateDir(dir: string, create: boolean): boolean {
  try {
    if (create) mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    return st.isDirectory() && st.uid === (process.getuid?.() ?? st.uid) && (st.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

/**
 * One host's cache (by its name and SSH target), or null when there is no root. Folders are made only when a copy is
 * written (a host whose files are all small leaves nothing behind); a folder that is not private is not used.
 */
export function hostFileCache(root: string | null, host: string): FileCache | null {
  if (root === null) return null;
  const dir = join(root, `host-${sha256Hex(host).slice(0, 32)}`);
  const fileOf = (path: string) => join(dir, sha256Hex(path).slice(0, 32));
  return {
    read(paths) {
      const found: Record<string, FileFact> = {};
      if (!privateDir(root, false) || !privateDir(dir, false)) return found;
      for (const path of paths) {
        let content: string;
        try {
          content = readFileSync(fileOf(path), 'utf8');
        } catch {
          continue;
        }
        found[path] = { path, sha256: sha256Hex(content), content };
      }
      return found;
    },
    write(files) {
      const large = files.filter((f) => f.content.length >= PATCH_MIN_BYTES);
      if (!large.length || !privateDir(root, true) || !privateDir(dir, true)) return;
      for (const { path, content } of large) {
        const file = fileOf(path);
        try {
          // whole or absent: a run killed while writing leaves the previous copy
          writeFileSync(`${file}.tmp${process.pid}`, content, { mode: 0o600 });
          renameSync(`${file}.tmp${process.pid}`, file);
        } catch {
          // a copy the cache could not keep costs a full transfer next time, nothing else
        }
      }
    },
    clear() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
