#!/usr/bin/env node
// The `tula-dsr` bin (copied to dist/agent/tula-dsr.js by scripts/bundle-agent.mjs): runs the bundled agent CLI
// (tula-dsr-agent.js) with V8's code cache, so that a run does not compile the same 800 KiB again. Node 22 and later
// keep the cache themselves (module.enableCompileCache); on Node 20 this file compiles the bundle with the cache it
// wrote after an earlier run. The cache lives in a folder of the user's own (mode 0700) and is keyed by Node's version
// and the bundle's content; anything amiss with it (unwritable, another owner, rejected by V8) only means compiling as
// without it. TULA_DSR_COMPILE_CACHE=0 turns it off.
'use strict';
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const Module = require('node:module');
const os = require('node:os');
const path = require('node:path');
const vm = require('node:vm');

const BUNDLE = path.join(__dirname, 'tula-dsr-agent.js');

/** The user's private cache folder, or null when there is none to trust. */
function cacheDir() {
  if (process.env.TULA_DSR_COMPILE_CACHE === '0' || typeof process.getuid !== 'function') return null;
  const dir = path.join(os.tmpdir(), `tula-dsr-compile-cache-${process.getuid()}`);
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if (error.code !== 'EEXIST') return null;
  }
  const st = fs.lstatSync(dir);
  return st.isDirectory() && st.uid === process.getuid() && (st.mode & 0o077) === 0 ? dir : null;
}

function load() {
  let dir;
  try {
    dir = cacheDir();
  } catch {
    dir = null;
  }
  if (dir && typeof Module.enableCompileCache === 'function') {
    Module.enableCompileCache(dir);
    return require(BUNDLE);
  }
  if (!dir) return require(BUNDLE);
  const source = fs.readFileSync(BUNDLE, 'utf8');
  const key = createHash('sha256').update(`${process.version}\0${process.arch}\0`).update(source).digest('hex').slice(0, 32);
  const file = path.join(dir, `agent-${key}.cache`);
  let cachedData;
  try {
    cachedData = fs.readFileSync(file);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(Module.wrap(source), { filename: BUNDLE, cachedData });
  const mod = new Module(BUNDLE, module);
  mod.filename = BUNDLE;
  mod.paths = Module._nodeModulePaths(__dirname);
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(BUNDLE), mod, BUNDLE, __dirname);
  mod.loaded = true;
  if (cachedData === undefined || script.cachedDataRejected) {
    // written once the run is over: the cache then holds the functions the run compiled, not only the top level
    process.once('exit', () => {
      try {
        const temp = `${file}.${process.pid}`;
        fs.writeFileSync(temp, script.createCachedData(), { mode: 0o600 });
        fs.renameSync(temp, file);
      } catch {
        // no cache this time
      }
    });
  }
  return mod.exports;
}

void load().main();
