/**
 * The `tula-dsr` bin is the agent CLI bundled into one file (scripts/bundle-agent.mjs): it answers exactly as the
 * compiled dist/agent/cli.js does, and loads nothing of dist/ or zod besides itself (ssh2 stays a dependency).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from '../../lab/exec';
import { CLI, REPO, assertDistFresh } from './helpers';

const BUNDLE = path.join(REPO, 'dist/agent/tula-dsr.js');

let dir: string;
beforeAll(() => {
  assertDistFresh();
  dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-bundle-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('GIVEN package.json WHEN read THEN the tula-dsr bin is the bundle', () => {
  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  expect(path.join(REPO, pkg.bin['tula-dsr'])).toBe(BUNDLE);
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
  const run = async (file: string) => {
    const r = await execFile(['node', file, ...args], { cwd: dir });
    return { ...r, stdout: r.stdout.replace(/\(\d+ ms,/g, '(… ms,') };
  };
  const [bundled, compiled] = await Promise.all([BUNDLE, CLI].map(run));
  expect(bundled).toEqual(compiled);
  expect(bundled.code).not.toBe(0);
  expect(bundled.stdout + bundled.stderr).toMatch(/tula-dsr|\(spec\)/);
});

test('GIVEN the bundle WHEN loaded THEN it reads no module of dist/ or zod besides itself', async () => {
  const script = `require(${JSON.stringify(BUNDLE)}); console.log(JSON.stringify(Object.keys(require.cache)))`;
  const r = await execFile(['node', '-e', script]);
  const loaded = (JSON.parse(r.stdout) as string[]).filter((f) => f !== BUNDLE);
  expect(loaded.filter((f) => f.includes(`${path.sep}dist${path.sep}`) || f.includes(`${path.sep}zod${path.sep}`))).toEqual([]);
});
