/**
 * The layers, as the imports draw them: model/ is pure (no cdktf, no I/O modules, nothing from the other layers),
 * constructs/ and agent/ do not know each other, runtime/ (shipped to balancers as one file) needs only model/ and
 * Node, and nothing outside test/ imports test code.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..');

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) return sources(rel);
    return /\.(ts|js)$/.test(name) && !name.endsWith('.d.ts') ? [rel] : [];
  });
}

/** Every module a file imports or requires: relative ones as repository paths, packages by name. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specifiers = [...text.matchAll(/(?:from\s+|import\s+|require\(\s*|import\(\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]);
  return specifiers.map((s) => (s.startsWith('.') ? relative(ROOT, resolve(ROOT, dirname(file), s)) : s));
}

const edges = (dirs: string[]) => dirs.flatMap(sources).flatMap((file) => importsOf(file).map((target) => ({ file, target })));
const into = (prefix: string) => (e: { target: string }) => e.target === prefix || e.target.startsWith(`${prefix}/`);

describe('import graph', () => {
  test('GIVEN product, lab and bench code THEN none of it imports from test/', () => {
    expect(edges(['model', 'runtime', 'constructs', 'agent', 'lab', 'bench']).filter(into('test'))).toEqual([]);
    expect(importsOf('main.ts').filter((t) => t.startsWith('test'))).toEqual([]);
  });

  test('GIVEN model/ THEN it imports no other layer, no cdktf and no I/O module', () => {
    const io = ['node:fs', 'fs', 'node:child_process', 'child_process', 'node:net', 'net', 'ssh2', 'cdktf', 'constructs'];
    const bad = edges(['model']).filter((e) => ['constructs', 'agent', 'lab', 'test'].some((d) => into(d)(e)) || io.includes(e.target));
    expect(bad).toEqual([]);
  });

  test('GIVEN constructs/ and agent/ THEN neither imports the other, and the agent never loads cdktf', () => {
    expect(edges(['constructs']).filter(into('agent'))).toEqual([]);
    expect(edges(['agent']).filter((e) => into('constructs')(e) || e.target === 'cdktf' || e.target === 'constructs')).toEqual([]);
  });

  test('GIVEN runtime/ THEN it imports only runtime/, model/ and Node built-ins (no agent, constructs, lab, test, cdktf, ssh2 or other package)', () => {
    const node = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    const runtimeEdges = edges(['runtime']);
    expect(runtimeEdges.length).toBeGreaterThan(0);
    expect(runtimeEdges.filter((e) => !into('runtime')(e) && !into('model')(e) && !node.has(e.target))).toEqual([]);
  });
});
