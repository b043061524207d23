/**
 * The Prometheus text for node_exporter's textfile collector, checked by the REAL `promtool check metrics` (Debian
 * package prometheus, installed by scripts/install-deps): its parser and its lint (`_total` counters, HELP, TYPE).
 * Without promtool this file FAILS: it never skips.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StatsSnapshot, buildStatsSnapshot, renderPrometheus } from '../../model';
import { SAMPLED_AT, STATS_SPEC, statsCounters, statsRuntime, statsSnapshot } from '../support/stats-fixtures';

function promtool(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw new Error(`promtool is needed (Debian: apt-get install prometheus, or scripts/install-deps): ${r.error.message}`);
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

const withoutCounters = (): StatsSnapshot => {
  const counters = statsCounters();
  for (const name of [...counters.keys()].filter((n) => n.startsWith('vip ') || n.startsWith('end_'))) counters.delete(name);
  return buildStatsSnapshot({ spec: STATS_SPEC, counters, sampledAt: SAMPLED_AT });
};

const SCENARIOS: [string, () => StatsSnapshot][] = [
  ['a runtime state with a failed backend and a pool failing open', () => statsSnapshot()],
  ['no runtime state', () => statsSnapshot({ runtime: null })],
  ['a runtime that checks nothing', () => statsSnapshot({ runtime: statsRuntime({ checks: [], pools: [], active: undefined }) })],
  ['counters missing on the balancer', withoutCounters],
];

/** Families in order of appearance: name → { help, type, samples }. */
function families(text: string): Map<string, { help: string; type: string; samples: string[] }> {
  const out = new Map<string, { help: string; type: string; samples: string[] }>();
  for (const line of text.trimEnd().split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    const name = meta?.[2] ?? /^([a-z_]+)[{ ]/.exec(line)![1];
    const f = out.get(name) ?? { help: '', type: '', samples: [] };
    if (meta?.[1] === 'HELP') f.help = meta[3];
    else if (meta?.[1] === 'TYPE') f.type = meta[3];
    else f.samples.push(line);
    out.set(name, f);
  }
  return out;
}

describe('renderPrometheus', () => {
  test.each(SCENARIOS)('GIVEN %s WHEN rendered THEN `promtool check metrics` accepts it without a remark', (_name, make) => {
    expect(promtool(renderPrometheus(make()))).toEqual({ status: 0, output: '' });
  });

  test('GIVEN text promtool must refuse (a counter without _total) THEN it does: the check above can fail', () => {
    const broken = renderPrometheus(statsSnapshot()).replaceAll('tula_dsr_vip_packets_total', 'tula_dsr_vip_packets');
    expect(promtool(broken)).toEqual({ status: 3, output: 'tula_dsr_vip_packets counter metrics should have "_total" suffix' });
  });

  test('GIVEN a snapshot THEN every counter ends in _total, every family has HELP and TYPE, and byte and packet figures say they are client→backend only', () => {
    const f = families(renderPrometheus(statsSnapshot()));
    expect([...f.keys()]).toEqual([
      'tula_dsr_vip_info',
      'tula_dsr_vip_packets_total',
      'tula_dsr_vip_bytes_total',
      'tula_dsr_backend_packets_total',
      'tula_dsr_backend_bytes_total',
      'tula_dsr_pool_backend_connections_total',
      'tula_dsr_pool_backend_connections_ended_total',
      'tula_dsr_pool_backend_connections_active',
      'tula_dsr_pool_backend_weight',
      'tula_dsr_pool_backend_up',
      'tula_dsr_pool_fail_open',
      'tula_dsr_sample_timestamp_seconds',
    ]);
    for (const [name, family] of f) {
      expect({ name, type: family.type }).toEqual({ name, type: name.endsWith('_total') ? 'counter' : 'gauge' });
      expect(family.help.length).toBeGreaterThan(20);
      if (/_(packets|bytes)_total$/.test(name)) expect(family.help).toContain('client to backend only: replies bypass a DSR balancer, which never sees them');
    }
  });

  test('GIVEN a snapshot THEN the series carry IPVS-style labels: VIPs local_*, backends remote_address, flow figures once per pool', () => {
    const text = renderPrometheus(statsSnapshot()).split('\n');
    expect(text).toEqual(
      expect.arrayContaining([
        'tula_dsr_vip_info{vip="web",pool="be972db5",local_address="10.0.1.100",local_port="80",proto="TCP",mode="l2",algorithm="weighted-round-robin"} 1',
        'tula_dsr_vip_packets_total{vip="web",pool="be972db5",local_address="10.0.1.100",local_port="80",proto="TCP"} 3600',
        'tula_dsr_vip_bytes_total{vip="dns",pool="7ac6eb23",local_address="10.0.1.102",local_port="53",proto="UDP"} 5400',
        'tula_dsr_backend_bytes_total{backend="be3",remote_address="10.0.1.13"} 102000',
        'tula_dsr_pool_backend_connections_total{pool="be972db5",backend="be2",remote_address="10.0.1.12",proto="TCP"} 200',
        'tula_dsr_pool_backend_connections_ended_total{pool="be972db5",backend="be2",remote_address="10.0.1.12",proto="TCP"} 195',
        'tula_dsr_pool_backend_connections_active{pool="be972db5",backend="be2",remote_address="10.0.1.12",proto="TCP",estimate="runtime"} 4',
        'tula_dsr_pool_backend_connections_active{pool="33ebd77f",backend="be1",remote_address="10.0.1.11",proto="TCP",estimate="upper_bound"} 10',
        'tula_dsr_pool_backend_weight{pool="33ebd77f",backend="be2",remote_address="10.0.1.12",proto="TCP"} 0',
        'tula_dsr_pool_backend_up{pool="be972db5",backend="be2",remote_address="10.0.1.12",proto="TCP"} 0',
        'tula_dsr_pool_backend_up{pool="be972db5",backend="be3",remote_address="10.0.1.13",proto="TCP"} 1',
        'tula_dsr_pool_fail_open{pool="33ebd77f",proto="TCP"} 1',
        `tula_dsr_sample_timestamp_seconds ${SAMPLED_AT}`,
      ]),
    );
    // api and apitls share a pool: its flow series appear once, not once per VIP
    expect(text.filter((l) => l.startsWith('tula_dsr_pool_backend_connections_total{pool="33ebd77f"'))).toHaveLength(2);
  });

  test('GIVEN no runtime state THEN no health, fail-open or runtime estimate is made up; UDP pools get no active gauge', () => {
    const f = families(renderPrometheus(statsSnapshot({ runtime: null })));
    expect(f.has('tula_dsr_pool_backend_up')).toBe(false);
    expect(f.has('tula_dsr_pool_fail_open')).toBe(false);
    const active = f.get('tula_dsr_pool_backend_connections_active')!.samples;
    expect(active).toHaveLength(5);
    expect(active.every((l) => l.includes('estimate="upper_bound"') && l.includes('proto="TCP"'))).toBe(true);
  });

  test('GIVEN counters missing on the balancer THEN their series are left out rather than reported as 0', () => {
    const f = families(renderPrometheus(withoutCounters()));
    expect(f.has('tula_dsr_vip_packets_total')).toBe(false);
    expect(f.has('tula_dsr_pool_backend_connections_ended_total')).toBe(false);
    expect(f.get('tula_dsr_pool_backend_connections_total')!.samples).toHaveLength(8);
  });

  test('GIVEN label values with a quote, a backslash and a line break THEN they are escaped and promtool parses the text', () => {
    const s = statsSnapshot();
    const odd: StatsSnapshot = { ...s, backends: [{ ...s.backends[0], names: ['a"b\\c\nd'] }] };
    const text = renderPrometheus(odd);
    expect(text).toContain('tula_dsr_backend_packets_total{backend="a\\"b\\\\c\\nd",remote_address="10.0.1.11"} 1500');
    expect(promtool(text)).toEqual({ status: 0, output: '' });
  });

  describe("the README's per-VIP query, run by `promtool test rules` on two samples of the textfile", () => {
    const query = (filter: string) => `rate(tula_dsr_pool_backend_connections_total[5m]) * on(pool) group_left(vip) tula_dsr_vip_info${filter}`;

    /** promtool's rule unit test: every series growing each minute by what it grew between two renders, the query at 5 min. */
    function runQuery(expr: string, expected: { labels: string; value: number }[]): { status: number | null; output: string } {
      const series = (text: string) =>
        new Map(
          text
            .split('\n')
            .filter((l) => l && !l.startsWith('#'))
            .map((l) => [l.slice(0, l.lastIndexOf(' ')), l.slice(l.lastIndexOf(' ') + 1)]),
        );
      const [first, second] = [series(renderPrometheus(statsSnapshot())), series(renderPrometheus(statsSnapshot({ scale: 2, sampledAt: SAMPLED_AT + 60 })))];
      const yaml = [
        'tests:',
        '  - interval: 1m',
        '    input_series:',
        ...[...first.keys()].flatMap((name) => [
          `      - series: '${name}'`,
          `        values: '${first.get(name)}+${Number(second.get(name)) - Number(first.get(name))}x5'`,
        ]),
        '    promql_expr_test:',
        `      - expr: '${expr}'`,
        '        eval_time: 5m',
        '        exp_samples:',
        ...expected.flatMap((e) => [`          - labels: '${e.labels}'`, `            value: ${e.value}`]),
      ].join('\n');
      const dir = mkdtempSync(join(tmpdir(), 'tula-promtool-'));
      try {
        writeFileSync(join(dir, 'test.yml'), `${yaml}\n`);
        const r = spawnSync('promtool', ['test', 'rules', join(dir, 'test.yml')], { encoding: 'utf8' });
        return { status: r.status, output: `${r.stdout}${r.stderr}` };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }

    test('GIVEN a pool shared by api and apitls WHEN the query filters vip="apitls" THEN it gives the pool\'s new flows per second per backend, labelled with the VIP', () => {
      // be1: 150 more new flows a minute, be2: 50 more
      const r = runQuery(query('{vip="apitls"}'), [
        { labels: '{pool="33ebd77f",backend="be1",remote_address="10.0.1.11",proto="TCP",vip="apitls"}', value: 2.5 },
        { labels: '{pool="33ebd77f",backend="be2",remote_address="10.0.1.12",proto="TCP",vip="apitls"}', value: 50 / 60 },
      ]);
      expect(r).toEqual({ status: 0, output: expect.stringContaining('SUCCESS') });
    });

    test('GIVEN the same query without the vip filter THEN Prometheus refuses the join over a shared pool (what the README warns about)', () => {
      const r = runQuery(query(''), []);
      expect(r.status).not.toBe(0);
      expect(r.output).toMatch(/many-to-many matching not allowed/);
    });
  });
});
