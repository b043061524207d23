import { maxOf, pushAll } from '../model';
import type { HostRunResult } from './runner';

/**
 * Ansible-style lines: one per task, then a recap per host. In check mode `changed` means "would change".
 * Diffs are printed with --diff (and always in check mode for drifted tasks when --diff is given).
 */
export function renderHostReport(result: HostRunResult, options: { diff?: boolean } = {}): string {
  const lines: string[] = [];
  for (const task of result.tasks) {
    lines.push(`${task.status}: ${result.host} ${task.name}${task.detail ? ` (${task.detail})` : ''}`);
    if (options.diff && task.diff && task.status !== 'ok')
      pushAll(
        lines,
        task.diff
          .trimEnd()
          .split('\n')
          .map((l) => `    ${l}`),
      );
  }
  if (result.error && !result.tasks.some((t) => t.status === 'failed')) lines.push(`failed: ${result.host} ${result.error.message}`);
  return lines.join('\n') + (lines.length ? '\n' : '');
}

export function renderRecap(results: readonly HostRunResult[]): string {
  const width = maxOf(
    results.map((r) => r.host.length),
    4,
  );
  const lines = ['', `RECAP ${'*'.repeat(60)}`];
  for (const r of results) {
    const failed = r.counts.failed + (r.error && r.counts.failed === 0 ? 1 : 0);
    lines.push(
      `${r.host.padEnd(width)} : ok=${r.counts.ok} changed=${r.counts.changed} failed=${failed} skipped=${r.counts.skipped}  (${r.durationMs} ms, ${r.roundTrips} round trips)`,
    );
  }
  return lines.join('\n') + '\n';
}

export function hasFailure(r: HostRunResult): boolean {
  return !!r.error || r.counts.failed > 0;
}
