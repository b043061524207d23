/**
 * The statistics model: the counters parser, the snapshot (pools, health, inferred active connections), rates
 * between samples, the terminal table and the JSON shape. The Prometheus text is in stats-prometheus.test.ts, the
 * figures from a real table in stats-counters.test.ts.
 */
import {
  RUNTIME_STATE_STALE_SEC,
  buildStatsSnapshot,
  poolName,
  formatAge,
  formatBytes,
  parseNftCounters,
  renderStatsTable,
  statsJson,
  statsRates,
} from '../../model';
import { SAMPLED_AT, STATS_SPEC, poolId, statsCounters, statsRuntime, statsSnapshot, vipCounter } from '../support/stats-fixtures';

const TEXT_LISTING = `table netdev tula_dsr {
\tcounter be_0a00010b {
\t\tpackets 1 bytes 60
\t}
\tcounter vip_web {
\t\tpackets 18446744 bytes 1106804640
\t}
}
`;

describe('parseNftCounters', () => {
  test('GIVEN the text listing WHEN parsed THEN every counter is read by name', () => {
    expect(parseNftCounters(TEXT_LISTING)).toEqual(
      new Map([
        ['be_0a00010b', { packets: 1, bytes: 60 }],
        ['vip_web', { packets: 18446744, bytes: 1106804640 }],
      ]),
    );
  });

  test('GIVEN the JSON listing WHEN parsed THEN the metainfo is skipped and the counters are read', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6', json_schema_version: 1 } },
        { counter: { family: 'netdev', name: 'vip_web', table: 'tula_dsr', handle: 5, packets: 7, bytes: 420 } },
      ],
    });
    expect(parseNftCounters(json)).toEqual(new Map([['vip_web', { packets: 7, bytes: 420 }]]));
  });

  test('GIVEN a table without counters or no output THEN no counter', () => {
    expect(parseNftCounters('table netdev tula_dsr {\n}\n').size).toBe(0);
    expect(parseNftCounters('').size).toBe(0);
  });

  test.each([
    ['Error: No such file or directory', 'not an nft counters listing: "Error: No such file or directory"'],
    ['{"nope": 1}', 'nft JSON output has no "nftables" array'],
  ])('GIVEN %j WHEN parsed THEN it throws %j', (text, message) => {
    expect(() => parseNftCounters(text)).toThrow(message);
  });
});

describe('the snapshot', () => {
  test('GIVEN counters and a runtime state THEN each VIP shows its own packets and its pool flows, health and fail-open', () => {
    const s = statsSnapshot();
    expect(s.vips.map((v) => [v.name, v.pool.length, v.packets, v.newFlows, v.active, v.activeSource, v.health])).toEqual([
      ['api', 8, 700, 200, 10, 'upper-bound', { backends: 2, down: 2, drained: 1, failOpen: true, known: true }],
      ['apitls', 8, 300, 200, 10, 'upper-bound', { backends: 2, down: 2, drained: 1, failOpen: true, known: true }],
      ['dns', 8, 90, 90, null, null, { backends: 3, down: 2, drained: 0, failOpen: false, known: true }],
      ['web', 8, 3600, 600, 5, 'runtime', { backends: 3, down: 2, drained: 0, failOpen: false, known: true }],
    ]);
    const web = s.pools.find((p) => p.vips.includes('web'))!;
    expect(web.backends.map((b) => [b.name, b.health, SAMPLED_AT - b.healthSince!, b.lastError])).toEqual([
      ['be1', 'down', 5.25, 'connection refused'],
      ['be2', 'down', 42.25, 'timed out after 1 s'],
      ['be3', 'up', 3600.25, undefined],
    ]);
    expect(s.missingCounters).toEqual([]);
    expect(s.runtime).toEqual({ pid: 4242, startedAt: Math.floor(SAMPLED_AT) - 3600, updatedAt: Math.floor(SAMPLED_AT) - 2, stale: false });
  });

  test('GIVEN no runtime state THEN health is unknown, fail-open unknown, and TCP active connections are new − ended (an upper bound)', () => {
    const s = statsSnapshot({ runtime: null });
    expect(s.runtime).toBeNull();
    expect(s.pools.every((p) => p.failOpen === null && p.backends.every((b) => b.health === 'unknown'))).toBe(true);
    const web = s.pools.find((p) => p.vips.includes('web'))!;
    expect(web.backends.map((b) => [b.active, b.activeSource])).toEqual([
      [2, 'upper-bound'],
      [5, 'upper-bound'],
      [0, 'upper-bound'],
    ]);
  });

  test('GIVEN a runtime that checks no backend THEN each backend is unchecked', () => {
    const s = statsSnapshot({ runtime: statsRuntime({ checks: [], pools: [] }) });
    expect(new Set(s.pools.flatMap((p) => p.backends.map((b) => b.health)))).toEqual(new Set(['unchecked']));
    expect(s.pools.map((p) => p.failOpen)).toEqual([false, false, false]);
  });

  test('GIVEN a backend checked (and down) for one VIP only THEN it is down in that pool and unchecked in the pools the runtime does not manage', () => {
    const full = statsRuntime();
    const web = poolName(poolId('web'));
    const s = statsSnapshot({ runtime: statsRuntime({ pools: full.pools.filter((p) => p.id === web) }) });
    const healthOf = (vip: string) => s.pools.find((p) => p.vips.includes(vip))!.backends.map((b) => b.health);
    expect(healthOf('web')).toEqual(['down', 'down', 'up']);
    expect(healthOf('dns')).toEqual(['unchecked', 'unchecked', 'unchecked']);
  });

  test(`GIVEN a runtime state written more than ${RUNTIME_STATE_STALE_SEC} s before the sample THEN it is stale, and the table says so`, () => {
    const t = Math.floor(SAMPLED_AT);
    const stale = statsSnapshot({ runtime: statsRuntime({ updatedAt: t - RUNTIME_STATE_STALE_SEC - 1 }) });
    const fresh = statsSnapshot({ runtime: statsRuntime({ updatedAt: t - RUNTIME_STATE_STALE_SEC + 1 }) });
    expect([stale.runtime!.stale, fresh.runtime!.stale]).toEqual([true, false]);
    expect(renderStatsTable(stale).split('\n')[1]).toBe('runtime: pid 4242, up 1h00m, state written 16s ago (STALE: is the runtime running?)');
  });

  test('GIVEN a balancer without some counters of the spec (it runs another configuration) THEN those figures are unknown, not zero, and the table warns', () => {
    const counters = statsCounters();
    counters.delete(vipCounter('web'));
    for (const name of [...counters.keys()].filter((n) => n.startsWith('new_'))) counters.delete(name);
    const s = buildStatsSnapshot({ spec: STATS_SPEC, counters, sampledAt: SAMPLED_AT });
    expect(s.missingCounters).toHaveLength(9);
    expect(s.vips.find((v) => v.name === 'web')).toMatchObject({ packets: null, bytes: null, newFlows: null, active: null });
    const table = renderStatsTable(s);
    const web = table.split('\n').find((l) => l.startsWith('web '))!;
    expect(web.split(/ +/)).toEqual(['web', '10.0.1.100:80/tcp', 'l2', 'weighted-round-robin', 'be972db5', '-', '-', '-', '-', '-']);
    expect(table.trimEnd().split('\n').pop()).toBe(
      'WARNING: the balancer lacks 9 counter(s) this spec names (new_33ebd77f_0a00010b, new_33ebd77f_0a00010c, new_7ac6eb23_0a00010b, …): ' +
        'it does not run this configuration; apply it, or give the spec it runs.',
    );
  });
});

describe('rates', () => {
  test('GIVEN two samples 2 s apart WHEN every counter doubled THEN each rate is the difference over 2 s', () => {
    const rates = statsRates(statsSnapshot({ scale: 2 }), statsSnapshot({ sampledAt: SAMPLED_AT - 2 }))!;
    expect(rates.intervalSec).toBe(2);
    expect(rates.vips.get('web')).toEqual({ packetsPerSec: 1800, bytesPerSec: 126_000, newFlowsPerSec: 300 });
    expect([...rates.pools.values()].flatMap((p) => [...p.values()]).map((r) => r.newFlowsPerSec)).toEqual([75, 25, 15, 15, 15, 50, 100, 150]);
    expect(rates.backends.get('10.0.1.13')).toEqual({ packetsPerSec: 850, bytesPerSec: 51_000 });
  });

  test('GIVEN a counter that went back (the table was recreated) THEN its rate is unknown, never negative', () => {
    const rates = statsRates(statsSnapshot({ scale: 1 }), statsSnapshot({ scale: 2, sampledAt: SAMPLED_AT - 2 }))!;
    expect(rates.vips.get('web')).toEqual({ packetsPerSec: null, bytesPerSec: null, newFlowsPerSec: null });
  });

  test('GIVEN two samples with the same time THEN there are no rates', () => {
    expect(statsRates(statsSnapshot(), statsSnapshot())).toBeNull();
  });
});

describe('the terminal table', () => {
  test('GIVEN counters and a runtime state WHEN rendered THEN it shows VIPs, pools (with their VIPs) and backends, with the caveats', () => {
    expect(renderStatsTable(statsSnapshot())).toBe(
      `balancer lb1 (eth0) · sampled 2025-06-15 15:06:40Z (balancer clock) · counters read in 4 ms
runtime: pid 4242, up 1h00m, state written 2s ago
Packets and bytes are client→backend only: the replies of a DSR balancer bypass it.

VIP     ADDRESS              MODE  ALGORITHM             POOL       PACKETS  BYTES      NEW FLOWS  ACTIVE  HEALTH
api     10.0.1.101:8080/tcp  l2    round-robin           33ebd77f*  700      41.0 KiB   200*       ≤10*    0/2 up, 1 drained, FAIL OPEN
apitls  10.0.1.101:8443/tcp  l2    round-robin           33ebd77f*  300      17.6 KiB   200*       ≤10*    0/2 up, 1 drained, FAIL OPEN
dns     10.0.1.102:53/udp    l2    round-robin           7ac6eb23   90       5.3 KiB    90         -       1/3 up
web     10.0.1.100:80/tcp    l2    weighted-round-robin  be972db5   3600     246.1 KiB  600        5       1/3 up

pool 33ebd77f · round-robin · l2/tcp · VIPs: api, apitls · FAIL OPEN: every backend is down, all of them get new flows · slots changed 5s ago
  BACKEND  ADDRESS    WEIGHT  NEW FLOWS  ENDED  ACTIVE  HEALTH                     SINCE
  be1      10.0.1.11  1       150        140    ≤10     down (fail open)           5s (connection refused)
  be2      10.0.1.12  0       50         50     ≤0      down (fail open), drained  42s (timed out after 1 s)

pool 7ac6eb23 · round-robin · l2/udp · VIP: dns · slots changed 5s ago
  BACKEND  ADDRESS    WEIGHT  NEW FLOWS  ENDED  ACTIVE  HEALTH  SINCE
  be1      10.0.1.11  1       30         0      -       down    5s (connection refused)
  be2      10.0.1.12  1       30         0      -       down    42s (timed out after 1 s)
  be3      10.0.1.13  1       30         0      -       up      1h00m

pool be972db5 · weighted-round-robin · l2/tcp · VIP: web · slots changed 5s ago
  BACKEND  ADDRESS    WEIGHT  NEW FLOWS  ENDED  ACTIVE  HEALTH  SINCE
  be1      10.0.1.11  1       100        98     1       down    5s (connection refused)
  be2      10.0.1.12  2       200        195    4       down    42s (timed out after 1 s)
  be3      10.0.1.13  3       300        300    0       up      1h00m

all VIPs, per backend:
  BACKEND  ADDRESS    PACKETS  BYTES
  be1      10.0.1.11  1500     87.9 KiB
  be2      10.0.1.12  1490     87.3 KiB
  be3      10.0.1.13  1700     99.6 KiB

* a pool shared by several VIPs (same backends, weights and algorithm): its flow figures are the pool's, for all of its VIPs.
≤N: new − ended flows, an upper bound: flows that expired without a FIN or RST from the client still count.
UDP flows have no end signal (they end by timeout only): their active count shows only where the runtime estimates it.
`,
    );
  });

  test('GIVEN a previous sample WHEN rendered THEN rate columns follow each total', () => {
    const table = renderStatsTable(statsSnapshot({ scale: 2 }), statsSnapshot({ sampledAt: SAMPLED_AT - 2 })).split('\n');
    expect(table[0]).toBe('balancer lb1 (eth0) · sampled 2025-06-15 15:06:40Z (balancer clock) · counters read in 4 ms · rates over 2.0 s');
    expect(table).toContain(
      'VIP     ADDRESS              MODE  ALGORITHM             POOL       PACKETS  PKT/S  BYTES      BYTES/S      NEW FLOWS  NEW/S   ACTIVE  HEALTH',
    );
    expect(table).toContain(
      'web     10.0.1.100:80/tcp    l2    weighted-round-robin  be972db5   7200     1800   492.2 KiB  123.0 KiB/s  1200       300.0   5       1/3 up',
    );
    expect(table).toContain('  be2      10.0.1.12  2       400        100.0  390    97.5     4       down    42s (timed out after 1 s)');
    expect(table).toContain('  be3      10.0.1.13  3400     850.0  199.2 KiB  49.8 KiB/s');
  });

  test('GIVEN no runtime state THEN health is "-" (drained backends still say so) and the header says why', () => {
    const table = renderStatsTable(statsSnapshot({ runtime: null })).split('\n');
    expect(table[1]).toBe('runtime: no state file (no health checks run: health unknown)');
    expect(table).toContain('  be2      10.0.1.12  0       50         50     ≤0      drained  -');
    expect(table).toContain('  be1      10.0.1.11  1       100        98     ≤2      -       -');
  });
});

describe('the JSON form', () => {
  test('GIVEN a first sample THEN rates and interval are null; GIVEN a later one THEN every entry carries its rates', () => {
    const first = statsJson(statsSnapshot());
    expect(first.intervalSec).toBeNull();
    expect(first.vips.every((v) => v.rates === null)).toBe(true);
    const later = statsJson(statsSnapshot({ scale: 2 }), statsSnapshot({ sampledAt: SAMPLED_AT - 2 }));
    expect(later.intervalSec).toBe(2);
    expect(later.pools.find((p) => p.vips.includes('web'))!.backends[2]).toEqual({
      name: 'be3',
      address: '10.0.1.13',
      weight: 3,
      newFlows: 600,
      endedFlows: 600,
      active: 0,
      activeSource: 'runtime',
      health: 'up',
      healthSince: Math.floor(SAMPLED_AT) - 3600,
      rates: { newFlowsPerSec: 150, endedFlowsPerSec: 150 },
    });
  });

  test('GIVEN the JSON form THEN its top-level keys are the documented ones and it survives JSON.stringify', () => {
    const json = JSON.parse(JSON.stringify(statsJson(statsSnapshot())));
    expect(Object.keys(json).sort()).toEqual([
      'backends',
      'balancer',
      'interface',
      'intervalSec',
      'listingMs',
      'missingCounters',
      'pools',
      'runtime',
      'sampledAt',
      'vips',
    ]);
    expect(Object.keys(json.vips[0]).sort()).toEqual(
      ['activeSource', 'active', 'address', 'algorithm', 'bytes', 'health', 'mode', 'name', 'newFlows', 'packets', 'pool', 'port', 'protocol', 'rates'].sort(),
    );
  });
});

describe('formats', () => {
  test.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1536, '1.5 KiB'],
    [5 * 1024 ** 3, '5.0 GiB'],
  ])('formatBytes(%d) = %s', (n, text) => expect(formatBytes(n)).toBe(text));

  test.each([
    [0, '0s'],
    [59.9, '59s'],
    [185, '3m05s'],
    [7380, '2h03m'],
    [277_200, '3d05h'],
    [-3, '0s'],
  ])('formatAge(%d) = %s', (n, text) => expect(formatAge(n)).toBe(text));
});
