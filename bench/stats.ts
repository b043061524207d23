/** Figures are reported as median, min and max over repeated runs; ratios compare medians of the same run. */
export interface Stat {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly runs: number;
}

export function stat(values: readonly number[]): Stat {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], runs: sorted.length };
}

export function fmt(s: Stat, unit: string, digits = 2): string {
  return `${s.median.toFixed(digits)} ${unit} (min ${s.min.toFixed(digits)}, max ${s.max.toFixed(digits)}, n=${s.runs})`;
}

export interface GoalRow {
  readonly section: string;
  readonly goal: string;
  readonly measured: string;
  readonly pass: boolean;
}

export function renderTable(rows: readonly GoalRow[]): string {
  const lines = ['| section | goal | measured | result |', '|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.section} | ${r.goal} | ${r.measured} | ${r.pass ? 'PASS' : 'MISS'} |`);
  return lines.join('\n') + '\n';
}

export function timeMs<T>(fn: () => T): { ms: number; value: T } {
  const start = process.hrtime.bigint();
  const value = fn();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, value };
}

export async function timeMsAsync<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, value };
}
