/**
 * Loads the agent CLI from its one-file bundle (dist/agent/tula-dsr-agent.js, made by scripts/bundle-agent.mjs) with
 * V8's code cache, for the `tula-dsr` bin and for the agent daemon: loading forty-odd compiled modules and zod's
 * hundred costs a process about a quarter of a second, the cached bundle a fraction of that. Node 22 and later keep
 * the cache themselves (module.enableCompileCache); on Node 20 the bundle is compiled here with the cache an earlier
 * process wrote once its run was over. The cache lives in a folder of the user's own (mode 0700) and is keyed by
 * Node's version and the bundle's content; anything amiss with it (unwritable, another owner, rejected by V8) only
 * means compiling as without it. TULA_DSR_COMPILE_CACHE=0 turns it off. Where there is no bundle (the sources run
 * under ts-jest), the CLI's own module loads.
 *
 * This module imports Node's built-ins only: it runs before anything else of the agent.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Script } from 'node:vm';
import type * as Cli from './cli';

export const AGENT_BUNDLE = join(__dirname, 'tula-dsr-agent.js');

/** The user's private cache folder, or null when there is none to trust. */
function cacheDir(): string | null {
  if (process.env.TULA_DSR_COMPILE_CACHE === '0' || typeof process.getuid !== 'function') return null;
  const dir = join(tmpdir(), `tula-dsr-compile-cache-${process.getuid()}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return null;
  }
  const st = lstatSync(dir);
  return st.isDirectory() && st.uid === process.getuid() && (st.mode & 0o077) === 0 ? dir : null;
}

interface ModuleInternals {
  wrap(source: string): string;
  _nodeModulePaths(dir: string): string[];
  enableCompileCache?: (dir: string) => unknown;
}

let loaded: typeof Cli | undefined;

/** The CLI module, loaded once per process. */
export function loadAgentCli(): typeof Cli {
  return (loaded ??= load());
}

function load(): typeof Cli {
  if (!existsSync(AGENT_BUNDLE)) return require('./cli') as typeof Cli;
  let dir: string | null;
  try {
    dir = cacheDir();
  } catch {
    dir = null;
  }
  const internals = Module as unknown as ModuleInternals;
  if (dir && typeof internals.enableCompileCache === 'function') {
    internals.enableCompileCache(dir);
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the bundle is found at run time, next to this file
    return require(AGENT_BUNDLE) as typeof Cli;
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- as above
  if (!dir) return require(AGENT_BUNDLE) as typeof Cli;
  const source = readFileSync(AGENT_BUNDLE, 'utf8');
  const key = createHash('sha256').update(`${process.version}\0${process.arch}\0`).update(source).digest('hex').slice(0, 32);
  const file = join(dir, `agent-${key}.cache`);
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(file);
  } catch {
    cachedData = undefined;
  }
  const script = new Script(internals.wrap(source), { filename: AGENT_BUNDLE, cachedData });
  const mod = new Module(AGENT_BUNDLE, module);
  mod.filename = AGENT_BUNDLE;
  mod.paths = internals._nodeModulePaths(__dirname);
  (script.runInThisContext() as (...args: unknown[]) => void).call(mod.exports, mod.exports, Module.createRequire(AGENT_BUNDLE), mod, AGENT_BUNDLE, __dirname);
  mod.loaded = true;
  if (cachedData === undefined || script.cachedDataRejected) {
    // written once the process is over: the cache then holds the functions its runs compiled, not only the top level
    process.once('exit', () => {
      try {
        const temp = `${file}.${process.pid}`;
        writeFileSync(temp, script.createCachedData(), { mode: 0o600 });
        renameSync(temp, file);
      } catch {
        // no cache this time
      }
    });
  }
  return mod.exports as typeof Cli;
}
