/**
 * The runtime's textfile for node_exporter: written atomically (temp file in the same folder, renamed over the
 * target), readable by node_exporter, checked by the real `promtool check metrics`, and a missing folder is a clear
 * error, not a folder tula-dsr invents.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderPrometheus } from '../../model';
import { DEFAULT_TEXTFILE_PATH, writeStatsTextfile } from '../../runtime/textfile';
import { SAMPLED_AT, statsSnapshot } from '../support/stats-fixtures';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tula-textfile-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('writeStatsTextfile', () => {
  test("GIVEN no path THEN it writes to the Debian node_exporter package's textfile folder", () => {
    expect(DEFAULT_TEXTFILE_PATH).toBe('/var/lib/prometheus/node-exporter/tula_dsr.prom');
  });

  test('GIVEN a folder WHEN written THEN the file holds the Prometheus text, is world-readable, no temp file is left, and promtool accepts it', () => {
    const path = join(dir, 'tula_dsr.prom');
    writeStatsTextfile(statsSnapshot(), path);
    expect(readFileSync(path, 'utf8')).toBe(renderPrometheus(statsSnapshot()));
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir)).toEqual(['tula_dsr.prom']);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: readFileSync(path), encoding: 'utf8' });
    expect({ status: check.status, out: `${check.stdout}${check.stderr}` }).toEqual({ status: 0, out: '' });
  });

  test('GIVEN a process umask of 077 (as the agent runs with) WHEN written THEN node_exporter, another user, can still read the file', () => {
    const path = join(dir, 'tula_dsr.prom');
    const umask = process.umask(0o077);
    try {
      writeStatsTextfile(statsSnapshot(), path);
    } finally {
      process.umask(umask);
    }
    expect(statSync(path).mode & 0o777).toBe(0o644);
  });

  test('GIVEN an existing textfile WHEN written again THEN a new file replaces it whole (rename: a reader holding the old one keeps the old text)', () => {
    const path = join(dir, 'tula_dsr.prom');
    writeFileSync(path, 'old\n');
    const before = statSync(path).ino;
    writeStatsTextfile(statsSnapshot({ scale: 2, sampledAt: SAMPLED_AT + 2 }), path);
    expect(statSync(path).ino).not.toBe(before);
    expect(readFileSync(path, 'utf8')).toContain(
      'tula_dsr_vip_packets_total{vip="web",pool="be972db5",local_address="10.0.1.100",local_port="80",proto="TCP"} 7200',
    );
  });

  test('GIVEN a folder that does not exist WHEN written THEN the error names the path and the likely cause, and nothing is created', () => {
    const path = join(dir, 'node-exporter', 'tula_dsr.prom');
    expect(() => writeStatsTextfile(statsSnapshot(), path)).toThrow(
      `cannot write the statistics textfile ${path}: the folder ${join(dir, 'node-exporter')} does not exist (is node_exporter's textfile collector set up?)`,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  test('GIVEN the target is a folder WHEN written THEN the rename fails, the error says so and the temp file is removed', () => {
    const path = join(dir, 'tula_dsr.prom');
    writeFileSync(join(dir, 'keep'), '');
    mkdirSync(join(path, 'inside'), { recursive: true });
    expect(() => writeStatsTextfile(statsSnapshot(), path)).toThrow(new RegExp(`^cannot write the statistics textfile ${path}: EISDIR`));
    expect(readdirSync(dir).sort()).toEqual(['keep', 'tula_dsr.prom']);
  });
});
