/**
 * The `tula-dsr` bin runs the agent CLI bundled into one file (scripts/bundle-agent.mjs) with V8's code cache
 * (scripts/agent-bin.js): it answers exactly as the compiled dist/agent/cli.js does, with or without its cache, and
 * the bundle loads nothing of dist/ or zod besides itself (ssh2 stays a dependency).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from '../../lab/exec';
import { CLI, REPO, assertDistFresh } from './helpers';

const BIN = path.join(REPO, 'dist/agent/tula-dsr.js');
const BUNDLE = path.join(REPO, 'dist/agent/tula-dsr-agent.js');

let dir: string;
beforeAll(() => {
  assertDistFresh();
  dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-bundle-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('GIVEN package.json WHEN read THEN the tula-dsr bin is the bundle', () => {
  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  expect(path.join(REPO, pkg.bin['tula-dsr'])).toBe(BIN);
});

test.each<[string, string[], unknown]>([
  ['no arguments', [], undefined],
  ['an unknown option', ['apply', '--nope'], undefined],
  ['a spec that is not JSON', ['apply', '--spec', 'bad.json'], '{ "kind": '],
  [
    'a spec with many mistakes',
    ['check', '--spec', 'wrong.json'],
    {
      kind: 'balancer',
      path: 'dsr/lb',
      name: 'lb',
      ssh: { host: '10.0.0.1', port: 0, user: 'Root' },
      interface: 'eth0',
      subnet: '10.0.1.0/24',
      vips: [
        { path: 'dsr/web', name: 'web', ip: '10.0.1.100', port: 80, cookie: 'x', backends: [{ path: 'dsr/web/a', name: 'a', ip: '10.0.2.5', weight: 5000 }] },
        { path: 'dsr/dns', name: 'dns', ip: '224.0.0.1', port: '*', protocol: 'sctp', backends: [] },
      ],
    },
  ],
])('GIVEN %s WHEN the bundle and cli.js run THEN they answer the same', async (_what, args, spec) => {
  if (spec !== undefined) writeFileSync(path.join(dir, args[2]), typeof spec === 'string' ? spec : JSON.stringify(spec));
  // the recap's run time is the only thing allowed to differ
  const run = async (file: string, env: Record<string, string> = {}) => {
    const r = await execFile(['node', file, ...args], { cwd: dir, env: { TMPDIR: dir, ...env } });
    return { ...r, stdout: r.stdout.replace(/\(\d+ ms,/g, '(… ms,') };
  };
  const compiled = await run(CLI);
  // without a cache, writing it, reading it, and with the cache turned off
  for (const env of [{}, {}, { TULA_DSR_COMPILE_CACHE: '0' }] as Record<string, string>[]) expect(await run(BIN, env)).toEqual(compiled);
  expect(compiled.code).not.toBe(0);
  expect(compiled.stdout + compiled.stderr).toMatch(/tula-dsr|\(spec\)/);
});

test("GIVEN a run of the bin WHEN it ends THEN the code cache is in a folder of the user's own, and used by the next run", async () => {
  const tmp = mkdtempSync(path.join(dir, 'tmp-'));
  await execFile(['node', BIN, 'apply', '--nope'], { env: { TMPDIR: tmp } });
  const cacheDir = path.join(tmp, `tula-dsr-compile-cache-${process.getuid!()}`);
  expect(statSync(cacheDir).mode & 0o777).toBe(0o700);
  const files = readdirSync(cacheDir);
  expect(files).toEqual([expect.stringMatching(/^agent-[0-9a-f]{32}\.cache$/)]);
  const written = statSync(path.join(cacheDir, files[0])).mtimeMs;
  await execFile(['node', BIN, 'apply', '--nope'], { env: { TMPDIR: tmp } });
  // accepted, so not written again
  expect(statSync(path.join(cacheDir, files[0])).mtimeMs).toBe(written);
});

test('GIVEN the bundle WHEN loaded THEN it reads no module of dist/ or zod besides itself', async () => {
  const script = `require(${JSON.stringify(BUNDLE)}); console.log(JSON.stringify(Object.keys(require.cache)))`;
  const r = await execFile(['node', '-e', script]);
  const loaded = (JSON.parse(r.stdout) as string[]).filter((f) => f !== BUNDLE);
  expect(loaded.filter((f) => f.includes(`${path.sep}dist${path.sep}`) || f.includes(`${path.sep}zod${path.sep}`))).toEqual([]);
});

test('GIVEN the agent daemon WHEN it serves THEN the CLI it runs is the bundle, and no compiled CLI module or zod is loaded', async () => {
  const runtime = mkdtempSync(path.join(dir, 'daemon-'));
  const server = path.join(REPO, 'dist/agent/daemon/server.js');
  // serves until idle for 100 ms, then lists the modules the process loaded
  const script = [
    `const { serve } = require(${JSON.stringify(server)});`,
    `serve(${JSON.stringify(path.join(runtime, 'agent.sock'))}, 100).then(() => console.log(JSON.stringify(Object.keys(require.cache))));`,
  ].join('\n');

  // a folder of its own for the code cache: the bin's runs above wrote theirs under `dir`
  const r = await execFile(['node', '-e', script], { env: { TMPDIR: runtime } });

  expect(r.code).toBe(0);
  const loaded = JSON.parse(r.stdout) as string[];
  // the CLI was loaded (its ssh2), from the bundle: not from the compiled modules
  expect(loaded.some((f) => f.includes(`${path.sep}ssh2${path.sep}`))).toBe(true);
  const compiled = ['agent/cli.js', 'agent/runner.js', 'model/index.js'].map((f) => path.join(REPO, 'dist', f));
  expect(loaded.filter((f) => compiled.includes(f) || f.includes(`${path.sep}zod${path.sep}`))).toEqual([]);
  // compiled with the code cache, which the daemon wrote as it exited
  expect(readdirSync(path.join(runtime, `tula-dsr-compile-cache-${process.getuid!()}`))).toEqual([expect.stringMatching(/^agent-[0-9a-f]{32}\.cache$/)]);
});
