/**
 * Large files travel as line patches (writeContentCommand): the edit script is the shortest one, and the host's awk
 * (mawk, Debian's default, and gawk: both real, run by a real sh) turns the base into exactly the new text, or
 * refuses when the base is not the text the patch was made against.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyLineEdits, lineEdits } from '../../model/line-edits';
import { renderDiff } from '../../model/text-diff';
import { PATCH_MIN_BYTES, linePatch, writeContentCommand } from '../../agent/tasks/steps';

/** A deterministic pseudo-random source (tests must fail the same way twice). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const awkPath = (name: string) => spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
/** Debian's default awk and GNU awk: scripts/install-deps installs both, and a missing one fails the suite. */
const AWKS = ['mawk', 'gawk'];

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tula-line-patch-'));
  for (const name of AWKS) {
    if (!awkPath(name)) throw new Error(`${name} is not installed: the line patch must be checked with it (scripts/install-deps installs it)`);
    mkdirSync(join(dir, name));
    symlinkSync(awkPath(name), join(dir, name, 'awk'));
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A ruleset-like text of `n` lines, some of them awkward for a shell or an awk (quotes, backslashes, `%`, `i `). */
function text(n: number, next: () => number): string[] {
  const odd = ["it's", 'say "hi" \\n %s %d', 'i 3', 'k 2', 'd 1', '', '  \t elements = { 10.0.0.1 . 80 : 1 }', '$(rm -rf /)', '`x`'];
  return Array.from({ length: n }, (_, i) => (next() < 0.1 ? odd[Math.floor(next() * odd.length)] : `\t\telement ${i} : ${Math.floor(next() * 1e6)}`));
}

/** `lines` with `changes` random single-line edits (replace, insert, delete). */
function edit(lines: readonly string[], changes: number, next: () => number): string[] {
  const out = [...lines];
  for (let c = 0; c < changes; c++) {
    const at = Math.floor(next() * (out.length + 1));
    const kind = next();
    if (kind < 0.4 && at < out.length) out[at] = `changed ${c} 'q' "dq" \\ %`;
    else if (kind < 0.7) out.splice(at, 0, `inserted ${c}`);
    else if (at < out.length) out.splice(at, 1);
  }
  return out;
}

const changedLines = (edits: NonNullable<ReturnType<typeof lineEdits>>) =>
  edits.reduce((n, e) => n + (e.op === 'insert' ? e.lines.length : e.op === 'drop' ? e.count : 0), 0);

describe('lineEdits', () => {
  test('GIVEN random texts and random edits WHEN the edit script is applied THEN it gives the new text, with no more changed lines than the edits made', () => {
    const next = random(17);
    for (let round = 0; round < 200; round++) {
      const before = text(Math.floor(next() * 300), next);
      const changes = Math.floor(next() * 12);
      const after = edit(before, changes, next);
      const edits = lineEdits(before, after, 1000);
      expect(edits).not.toBeNull();
      expect(applyLineEdits(before, edits!)).toEqual(after);
      // a replaced line is one drop and one insert
      expect(changedLines(edits!)).toBeLessThanOrEqual(2 * changes);
    }
  });

  test('GIVEN a known change WHEN diffed THEN the script is the shortest one', () => {
    expect(lineEdits(['a', 'b', 'c', 'd'], ['a', 'x', 'c', 'd', 'e'], 10)).toEqual([
      { op: 'keep', count: 1 },
      { op: 'drop', count: 1 },
      { op: 'insert', lines: ['x'] },
      { op: 'keep', count: 2 },
      { op: 'insert', lines: ['e'] },
    ]);
    expect(lineEdits([], ['a'], 10)).toEqual([{ op: 'insert', lines: ['a'] }]);
    expect(lineEdits(['a', 'b'], [], 10)).toEqual([{ op: 'drop', count: 2 }]);
    expect(lineEdits(['a'], ['a'], 0)).toEqual([{ op: 'keep', count: 1 }]);
  });

  test('GIVEN more changed lines than allowed WHEN diffed THEN there is no script', () => {
    const before = Array.from({ length: 100 }, (_, i) => `line ${i}`);
    const after = before.map((l, i) => (i % 2 ? `${l} changed` : l));
    expect(lineEdits(before, after, 99)).toBeNull();
    expect(lineEdits(before, after, 100)).not.toBeNull();
  });
});

describe.each(AWKS)('writeContentCommand with %s', (awk) => {
  const runSh = (command: string) =>
    spawnSync('sh', ['-c', command], { encoding: 'utf8', env: { ...process.env, PATH: `${join(dir, awk)}:${process.env.PATH}` } });

  test('GIVEN a large text and a few changed lines WHEN the command runs on the base THEN the result is byte for byte the new text, sent as a patch a fraction of its size', () => {
    const next = random(awk.length);
    for (let round = 0; round < 20; round++) {
      const before = text(2000 + Math.floor(next() * 500), next);
      const after = edit(before, 1 + Math.floor(next() * 20), next);
      const [baseText, newText] = [before.join('\n') + '\n', after.join('\n') + '\n'];
      expect(newText.length).toBeGreaterThanOrEqual(PATCH_MIN_BYTES);
      const base = join(dir, `base-${awk}`);
      const target = join(dir, `target-${awk}`);
      writeFileSync(base, baseText);
      const command = writeContentCommand(target, newText, { path: base, content: baseText });
      expect(command).toContain(' | awk ');
      expect(command.length).toBeLessThan(newText.length / 10);
      const r = runSh(command);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(readFileSync(target, 'utf8')).toBe(newText);
    }
  });

  test('GIVEN a base that changed since the patch was made WHEN the command runs THEN it fails and says so', () => {
    const next = random(99);
    const before = text(2500, next);
    const after = edit(before, 3, next);
    const [baseText, newText] = [before.join('\n') + '\n', after.join('\n') + '\n'];
    const base = join(dir, `changed-base-${awk}`);
    writeFileSync(base, baseText.replace('element 7 ', 'element seven '));
    const r = runSh(writeContentCommand(join(dir, `changed-target-${awk}`), newText, { path: base, content: baseText }));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`${base} changed since the facts were read`);
  });
});

describe('when a patch is not worth it', () => {
  test('GIVEN a small text, a text without a final newline, or a rewrite WHEN a patch is asked for THEN the text goes whole', () => {
    const next = random(5);
    const big = text(3000, next).join('\n') + '\n';
    expect(linePatch('a\n', 'b\n')).toBeNull();
    expect(linePatch(big, `${big}tail`)).toBeNull();
    expect(linePatch(big, big.replace(/element/g, 'ELEMENT'))).toBeNull();
    expect(linePatch(big, `${big}one more line\n`)).not.toBeNull();
    // whole, with the text itself in the command
    expect(writeContentCommand('/tmp/x', 'b\n', { path: '/tmp/y', content: 'a\n' })).toBe(`printf '%s' 'b\n' > /tmp/x`);
    execFileSync('sh', ['-c', writeContentCommand(join(dir, 'whole'), "it's\n")]);
    expect(readFileSync(join(dir, 'whole'), 'utf8')).toBe("it's\n");
  });
});

describe('renderDiff of large texts', () => {
  test('GIVEN two large texts with more changed lines than an exact diff may take WHEN diffed THEN every removed and added line is listed', () => {
    const a = Array.from({ length: 6000 }, (_, i) => `old ${i}`);
    const b = Array.from({ length: 6000 }, (_, i) => `new ${i}`);
    const lines = renderDiff(['same', ...a, 'tail'].join('\n') + '\n', ['same', ...b, 'tail'].join('\n') + '\n', 'f').split('\n');
    expect(lines.filter((l) => l.startsWith('-old ')).length).toBe(6000);
    expect(lines.filter((l) => l.startsWith('+new ')).length).toBe(6000);
    expect(lines).not.toContain(' same');
  });

  test('GIVEN 5,000 lines with changes far apart WHEN diffed for a review THEN each change shows exactly, in place, with its context', () => {
    const a = Array.from({ length: 5000 }, (_, i) => `line ${i}`);
    const b = [...a];
    b[100] = 'changed 100';
    b.splice(3000, 0, 'new');
    b.splice(4000, 1);
    expect(renderDiff(a.join('\n') + '\n', b.join('\n') + '\n', 'f')).toBe(
      [
        '--- f (host)',
        '+++ f (desired)',
        ...[' line 98', ' line 99', '-line 100', '+changed 100', ' line 101', ' line 102', '@@'],
        ...[' line 2998', ' line 2999', '+new', ' line 3000', ' line 3001', '@@'],
        ...[' line 3997', ' line 3998', '-line 3999', ' line 4000', ' line 4001'],
      ].join('\n') + '\n',
    );
  });
});
