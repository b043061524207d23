import { LineEdit, commonEnds, lineEdits } from './line-edits';

export interface DiffOptions {
  /** Unchanged lines shown around each change. @default 2 */
  readonly context?: number;
  /** What the two texts are, shown in the header after the label. @default ['host', 'desired'] */
  readonly sides?: readonly [string, string];
}

/** Above this many cells (lines before × lines after), the LCS table is too large: see renderDiff. */
const LCS_CELLS = 4_000_000;
/** Large texts that differ in at most this many lines get Myers' exact diff (see lineEdits). */
const MYERS_MAX_CHANGES = 5_000;

/**
 * A line diff for reports (the agent's check and --diff, the plan review): unified-style `-`/`+` lines with a
 * little context. Small texts get an exact LCS diff. Very large ones (rulesets and boot scripts of thousands of VIPs)
 * get Myers' exact diff while few lines differ (a change to a few VIPs, wherever their lines are); when many do,
 * the lines both texts begin and end with are set aside, and what is left gets a multiset diff, which is linear.
 */
export function renderDiff(before: string, after: string, label: string, options: DiffOptions = {}): string {
  if (before === after) return '';
  const { context = 2, sides = ['host', 'desired'] } = options;
  const a = before.split('\n');
  const b = after.split('\n');
  if (a[a.length - 1] === '') a.pop();
  if (b[b.length - 1] === '') b.pop();
  const header = [`--- ${label} (${sides[0]})`, `+++ ${label} (${sides[1]})`];
  let ops: DiffOp[];
  if (a.length * b.length <= LCS_CELLS) ops = lcsOps(a, b);
  else {
    const edits = lineEdits(a, b, MYERS_MAX_CHANGES);
    if (!edits) {
      const { start, endA, endB } = commonEnds(a, b);
      return [...header, ...multisetDiff(a.slice(start, endA), b.slice(start, endB))].join('\n') + '\n';
    }
    ops = editOps(a, edits);
  }
  const keep = new Set<number>();
  ops.forEach((op, i) => {
    if (op.kind !== ' ') for (let j = Math.max(0, i - context); j <= Math.min(ops.length - 1, i + context); j++) keep.add(j);
  });
  const out: string[] = [...header];
  let last = -1;
  ops.forEach((op, i) => {
    if (!keep.has(i)) return;
    if (last >= 0 && i > last + 1) out.push('@@');
    out.push(`${op.kind}${op.line}`);
    last = i;
  });
  return out.join('\n') + '\n';
}

type DiffOp = { kind: ' ' | '-' | '+'; line: string };

/** The edit script as diff lines; in each changed block, removals before additions, as diff -u prints them. */
function editOps(a: readonly string[], edits: readonly LineEdit[]): DiffOp[] {
  const ops: DiffOp[] = [];
  let added: DiffOp[] = [];
  let at = 0;
  for (const e of edits) {
    if (e.op === 'insert') {
      for (const line of e.lines) added.push({ kind: '+', line });
      continue;
    }
    if (e.op === 'keep') {
      ops.push(...added);
      added = [];
    }
    for (let i = 0; i < e.count; i++) ops.push({ kind: e.op === 'keep' ? ' ' : '-', line: a[at++] });
  }
  ops.push(...added);
  return ops;
}

function lcsOps(a: string[], b: string[]): DiffOp[] {
  const n = a.length;
  const m = b.length;
  const table = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
  }
  const ops: DiffOp[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      ops.push({ kind: ' ', line: a[i] });
      i++;
      j++;
    } else if (i < n && (j === m || table[i + 1][j] >= table[i][j + 1])) {
      // removals before additions, as diff -u prints a changed block
      ops.push({ kind: '-', line: a[i++] });
    } else {
      ops.push({ kind: '+', line: b[j++] });
    }
  }
  return ops;
}

function multisetDiff(a: string[], b: string[]): string[] {
  const count = new Map<string, number>();
  for (const line of a) count.set(line, (count.get(line) ?? 0) + 1);
  const added: string[] = [];
  for (const line of b) {
    const c = count.get(line) ?? 0;
    if (c > 0) count.set(line, c - 1);
    else added.push(`+${line}`);
  }
  const removed = a.filter((line) => {
    const c = count.get(line) ?? 0;
    if (c > 0) {
      count.set(line, c - 1);
      return true;
    }
    return false;
  });
  return [...removed.map((l) => `-${l}`), ...added];
}
