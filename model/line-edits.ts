/** One run of a line edit script, in order: keep `count` lines of the old text, drop `count`, or insert `lines`. */
export type LineEdit = { readonly op: 'keep' | 'drop'; readonly count: number } | { readonly op: 'insert'; readonly lines: readonly string[] };

/**
 * The shortest edit script from `before` to `after` (arrays of lines), or null when it needs more than `maxChanges`
 * dropped plus inserted lines. Myers' O((N + M) D) algorithm after setting aside the lines both begin and end with:
 * a change to a few VIPs of a 20,000-line ruleset costs milliseconds, where an LCS table would not fit in memory.
 */
export function lineEdits(before: readonly string[], after: readonly string[], maxChanges: number): LineEdit[] | null {
  const { start, endA, endB } = commonEnds(before, after);
  const middle = middleEdits(before.slice(start, endA), after.slice(start, endB), maxChanges);
  if (middle === null) return null;
  return merge([{ op: 'keep', count: start }, ...middle, { op: 'keep', count: before.length - endA }]);
}

/** How many lines both begin with (`start`), and where the lines both end with begin in each (`endA`, `endB`). */
export function commonEnds(a: readonly string[], b: readonly string[]): { start: number; endA: number; endB: number } {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  return { start, endA, endB };
}

type Step = { op: 'keep' | 'drop'; count: number } | { op: 'insert'; lines: string[] };

function middleEdits(a: readonly string[], b: readonly string[], maxChanges: number): Step[] | null {
  const n = a.length;
  const m = b.length;
  const max = Math.min(maxChanges, n + m);
  // every script drops or inserts at least the difference in length
  if (Math.abs(n - m) > max) return null;
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  // v as it stood before each round d: the backtrack replays the choices from them
  const trace: Int32Array[] = [];
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice());
    for (let k = -d; k <= d; k += 2) {
      const down = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]);
      let x = down ? v[offset + k + 1] : v[offset + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) return backtrack(trace, offset, a, b, d);
    }
  }
  return null;
}

function backtrack(trace: readonly Int32Array[], offset: number, a: readonly string[], b: readonly string[], depth: number): Step[] {
  const reversed: Step[] = [];
  let x = a.length;
  let y = b.length;
  for (let d = depth; d > 0; d--) {
    const v = trace[d];
    const k = x - y;
    const down = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]);
    const prevK = down ? k + 1 : k - 1;
    const prevX = v[offset + prevK];
    const prevY = prevX - prevK;
    const snake = Math.min(x - (down ? prevX : prevX + 1), y - (down ? prevY + 1 : prevY));
    if (snake > 0) reversed.push({ op: 'keep', count: snake });
    if (down) reversed.push({ op: 'insert', lines: [b[prevY]] });
    else reversed.push({ op: 'drop', count: 1 });
    x = prevX;
    y = prevY;
  }
  if (x > 0) reversed.push({ op: 'keep', count: x });
  return reversed.reverse();
}

/** Joins neighbouring runs of one kind and leaves out empty ones. */
function merge(steps: readonly Step[]): LineEdit[] {
  const out: Step[] = [];
  for (const s of steps) {
    if (s.op === 'insert' ? s.lines.length === 0 : s.count === 0) continue;
    const last = out[out.length - 1];
    if (last?.op === 'insert' && s.op === 'insert') last.lines.push(...s.lines);
    else if (last && last.op === s.op && last.op !== 'insert' && s.op !== 'insert') last.count += s.count;
    else out.push(s.op === 'insert' ? { op: 'insert', lines: [...s.lines] } : { ...s });
  }
  return out;
}

/** Applies an edit script (what the host's awk does with its text form): for tests and checks. */
export function applyLineEdits(before: readonly string[], edits: readonly LineEdit[]): string[] {
  const out: string[] = [];
  let at = 0;
  for (const e of edits) {
    if (e.op === 'insert') out.push(...e.lines);
    else {
      if (e.op === 'keep') out.push(...before.slice(at, at + e.count));
      at += e.count;
    }
  }
  out.push(...before.slice(at));
  return out;
}
