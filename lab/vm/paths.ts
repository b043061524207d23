/** Where the VM lab keeps what it downloads and builds. */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/** The repository root: the nearest ancestor of this file whose package.json is tula-dsr's (works from lab/vm and dist/lab/vm). */
export function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'tula-dsr') return dir;
      } catch {
        // not ours; keep looking
      }
    }
    if (path.dirname(dir) === dir) throw new Error(`lab/vm: cannot find the tula-dsr repository above ${__dirname}`);
  }
}

/**
 * The cache folder (git-ignored): `.cache/vm/` in the repository, or TULA_DSR_VM_CACHE.
 *   debs/       the .deb files apt-get downloaded
 *   pkgs/NAME/  each .deb unpacked
 *   images/     base initramfs images, one per set of inputs
 */
export function cacheDir(): string {
  return path.resolve(process.env.TULA_DSR_VM_CACHE ?? path.join(repoRoot(), '.cache', 'vm'));
}
