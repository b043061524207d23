/**
 * Probe targets and slot pools: one probe per (backend address, check) whatever the number of VIPs, sent through
 * the first VIP by name that uses it; VIPs whose backends are checked differently never share a slot pool.
 */
import { BackendSpec, VipSpec, backendTargetKeys, checkKey, effectiveCheck, groupPools, probeTargets, targetProbeIdentity } from '../../model';
import type { HealthCheckSpec } from '../../model';

const TCP: HealthCheckSpec = { kind: 'tcp', intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2 };
const HTTP: HealthCheckSpec = { kind: 'http', intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2, path: '/healthz', expectStatus: '200-399' };

function backend(name: string, ip: string, extra: Partial<BackendSpec> = {}): BackendSpec {
  return { path: `s/v/${name}`, name, ip, weight: 1, ...extra };
}

function vip(name: string, ip: string, extra: Partial<VipSpec> = {}, backends = [backend('a', '10.0.1.11'), backend('b', '10.0.1.12')]): VipSpec {
  return {
    path: `s/${name}`,
    name,
    ip,
    port: 80,
    protocol: 'tcp',
    mode: 'l2',
    algorithm: 'weighted-round-robin',
    flowTimeoutSec: 300,
    backends,
    ...extra,
  };
}

describe('effectiveCheck', () => {
  test('GIVEN no check or kind none WHEN resolved THEN the backend is not checked', () => {
    expect(effectiveCheck(vip('w', '10.0.1.100'), backend('a', '10.0.1.11'))).toBeNull();
    expect(effectiveCheck(vip('w', '10.0.1.100', { healthCheck: { kind: 'none' } }), backend('a', '10.0.1.11'))).toBeNull();
  });

  test("GIVEN the VIP's check without port WHEN resolved THEN the VIP port is filled in", () => {
    expect(effectiveCheck(vip('w', '10.0.1.100', { port: 443, healthCheck: TCP }), backend('a', '10.0.1.11'))).toEqual({ ...TCP, port: 443 });
  });

  test("GIVEN a backend's own check WHEN resolved THEN it replaces the VIP's entirely (no field is merged)", () => {
    const own: HealthCheckSpec = { kind: 'tcp', intervalSec: 5, timeoutSec: 1, fall: 1, rise: 1 };
    expect(effectiveCheck(vip('w', '10.0.1.100', { healthCheck: { ...HTTP, port: 8080 } }), backend('a', '10.0.1.11', { healthCheck: own }))).toEqual({
      ...own,
      port: 80,
    });
  });

  test('GIVEN a backend with kind none under a checked VIP WHEN resolved THEN that backend is exempt', () => {
    expect(effectiveCheck(vip('w', '10.0.1.100', { healthCheck: TCP }), backend('a', '10.0.1.11', { healthCheck: { kind: 'none' } }))).toBeNull();
  });
});

describe('checkKey', () => {
  test.each<[string, HealthCheckSpec, string]>([
    ['tcp', TCP, 'tcp/80 interval=2 timeout=1 fall=3 rise=2'],
    ['http', HTTP, 'http/80 path=/healthz status=200-399 interval=2 timeout=1 fall=3 rise=2'],
    ['http with host', { ...HTTP, host: 'www.example.com' }, 'http/80 path=/healthz status=200-399 host=www.example.com interval=2 timeout=1 fall=3 rise=2'],
    [
      'udp',
      { kind: 'udp', intervalSec: 0.5, timeoutSec: 0.2, fall: 2, rise: 1, payloadHex: 'c0ffee', port: 53 },
      'udp/53 payload=c0ffee interval=0.5 timeout=0.2 fall=2 rise=1',
    ],
    [
      'udp with expected bytes',
      { kind: 'udp', intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2, payloadHex: 'c0ffee', expectHex: '8180', port: 53 },
      'udp/53 payload=c0ffee expect=8180 interval=2 timeout=1 fall=3 rise=2',
    ],
  ])('GIVEN a %s check WHEN keyed THEN the key reads %j', (_kind, check, key) => {
    expect(checkKey(effectiveCheck(vip('w', '10.0.1.100', { healthCheck: check }), backend('a', '10.0.1.11'))!)).toBe(key);
  });

  test('GIVEN two checks that differ only in timing WHEN compared THEN their keys differ but their probe identity is the same', () => {
    const a = probeTargets({ vips: [vip('w', '10.0.1.100', { healthCheck: TCP })] })[0];
    const b = probeTargets({ vips: [vip('w', '10.0.1.100', { healthCheck: { ...TCP, fall: 5 } })] })[0];
    expect(a.key).not.toBe(b.key);
    expect(targetProbeIdentity(a)).toBe('10.0.1.11 tcp/80');
    expect(targetProbeIdentity(b)).toBe('10.0.1.11 tcp/80');
  });
});

describe('probeTargets', () => {
  test('GIVEN three VIPs on the same two backends with one check WHEN listed THEN two targets, through the first VIP by name', () => {
    const targets = probeTargets({
      vips: [vip('web', '10.0.1.100', { healthCheck: TCP }), vip('api', '10.0.1.101', { healthCheck: TCP }), vip('zz', '10.0.1.102', { healthCheck: TCP })],
    });
    expect(targets).toEqual([
      {
        key: '10.0.1.11 tcp/80 interval=2 timeout=1 fall=3 rise=2',
        backend: { ip: '10.0.1.11', mode: 'l2' },
        check: { ...TCP, port: 80 },
        via: { name: 'api', ip: '10.0.1.101', port: 80 },
        vips: ['api', 'web', 'zz'],
      },
      {
        key: '10.0.1.12 tcp/80 interval=2 timeout=1 fall=3 rise=2',
        backend: { ip: '10.0.1.12', mode: 'l2' },
        check: { ...TCP, port: 80 },
        via: { name: 'api', ip: '10.0.1.101', port: 80 },
        vips: ['api', 'web', 'zz'],
      },
    ]);
  });

  test('GIVEN VIPs on other ports, a separate health port, an override and an unchecked VIP WHEN listed THEN one target per distinct (backend, check)', () => {
    const targets = probeTargets({
      vips: [
        vip('web', '10.0.1.100', { healthCheck: TCP }),
        vip('tls', '10.0.1.100', { port: 443, healthCheck: TCP }),
        vip('alt', '10.0.1.101', { port: 443, healthCheck: { ...TCP, port: 80 } }),
        vip('l3', '10.0.1.102', { mode: 'l3', healthCheck: HTTP }, [backend('a', '10.0.1.11'), backend('c', '10.0.9.13', { healthCheck: TCP })]),
        vip('plain', '10.0.1.103'),
      ],
    });
    expect(targets.map((t) => [t.key, t.via.name, t.backend.mode, t.vips.join(',')])).toEqual([
      ['10.0.1.11 tcp/80 interval=2 timeout=1 fall=3 rise=2', 'alt', 'l2', 'alt,web'],
      ['10.0.1.12 tcp/80 interval=2 timeout=1 fall=3 rise=2', 'alt', 'l2', 'alt,web'],
      ['10.0.1.11 http/80 path=/healthz status=200-399 interval=2 timeout=1 fall=3 rise=2', 'l3', 'l3', 'l3'],
      ['10.0.9.13 tcp/80 interval=2 timeout=1 fall=3 rise=2', 'l3', 'l3', 'l3'],
      ['10.0.1.11 tcp/443 interval=2 timeout=1 fall=3 rise=2', 'tls', 'l2', 'tls'],
      ['10.0.1.12 tcp/443 interval=2 timeout=1 fall=3 rise=2', 'tls', 'l2', 'tls'],
    ]);
  });

  test('GIVEN a backend with an explicit MAC WHEN listed THEN the target carries it', () => {
    const [target] = probeTargets({ vips: [vip('w', '10.0.1.100', { healthCheck: TCP }, [backend('a', '10.0.1.11', { mac: '52:54:00:12:34:56' })])] });
    expect(target.backend).toEqual({ ip: '10.0.1.11', mac: '52:54:00:12:34:56', mode: 'l2' });
  });

  test('GIVEN 10,000 VIPs on 4 backends with one check WHEN listed THEN 4 targets, each deciding all 10,000 VIPs, within 1 s', () => {
    const backends = [11, 12, 13, 14].map((n) => backend(`b${n}`, `10.0.1.${n}`));
    const vips = Array.from({ length: 10000 }, (_, i) =>
      vip(`v${String(9999 - i).padStart(5, '0')}`, `10.1.${i >> 8}.${i & 255}`, { healthCheck: { ...HTTP } }, backends),
    );
    const started = process.hrtime.bigint();
    const targets = probeTargets({ vips });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(targets.map((t) => [t.backend.ip, t.via.name, t.vips.length])).toEqual([
      ['10.0.1.11', 'v00000', 10000],
      ['10.0.1.12', 'v00000', 10000],
      ['10.0.1.13', 'v00000', 10000],
      ['10.0.1.14', 'v00000', 10000],
    ]);
    expect(ms).toBeLessThan(1000);
  });
});

describe('slot pools and checks', () => {
  const poolsOf = (vips: VipSpec[]) => groupPools(vips).map((p) => p.vips);

  test('GIVEN VIPs with the same backends and the same check WHEN grouped THEN they share one pool', () => {
    expect(poolsOf([vip('web', '10.0.1.100', { healthCheck: TCP }), vip('api', '10.0.1.101', { healthCheck: { ...TCP } })])).toEqual([['api', 'web']]);
  });

  test.each<[string, Partial<VipSpec>]>([
    ['no check', {}],
    ['another kind', { healthCheck: HTTP }],
    ['another port', { healthCheck: { ...TCP, port: 8080 } }],
    ['another fall', { healthCheck: { ...TCP, fall: 5 } }],
    ['kind none', { healthCheck: { kind: 'none' } }],
  ])('GIVEN a tcp-checked VIP and one with %s WHEN grouped THEN they do not share a pool', (_what, other) => {
    expect(poolsOf([vip('web', '10.0.1.100', { healthCheck: TCP }), vip('api', '10.0.1.101', other)])).toHaveLength(2);
  });

  test('GIVEN the same VIP check but one backend overriding it in one VIP WHEN grouped THEN they do not share a pool', () => {
    const overridden = [backend('a', '10.0.1.11', { healthCheck: { ...TCP, port: 22 } }), backend('b', '10.0.1.12')];
    expect(poolsOf([vip('web', '10.0.1.100', { healthCheck: TCP }), vip('api', '10.0.1.101', { healthCheck: TCP }, overridden)])).toHaveLength(2);
  });

  test("GIVEN a pool's VIPs WHEN their backends are mapped to probe targets THEN every VIP gives the keys of probeTargets, null where unchecked", () => {
    const backends = [backend('a', '10.0.1.11'), backend('b', '10.0.1.12', { healthCheck: { kind: 'none' } }), backend('c', '10.0.1.13')];
    const spec = { vips: [vip('web', '10.0.1.100', { healthCheck: TCP }, backends), vip('api', '10.0.1.101', { healthCheck: TCP }, backends)] };
    const [pool] = groupPools(spec.vips);
    const keys = pool.vips.map((name) => backendTargetKeys(spec.vips.find((v) => v.name === name)!));
    const targets = probeTargets(spec).map((t) => t.key);
    expect(keys).toEqual([
      [targets[0], null, targets[1]],
      [targets[0], null, targets[1]],
    ]);
    expect(targets).toEqual(['10.0.1.11 tcp/80 interval=2 timeout=1 fall=3 rise=2', '10.0.1.13 tcp/80 interval=2 timeout=1 fall=3 rise=2']);
  });

  test('GIVEN unchecked VIPs and VIPs with kind none WHEN grouped THEN they share a pool (kind none is no check)', () => {
    expect(poolsOf([vip('web', '10.0.1.100'), vip('api', '10.0.1.101', { healthCheck: { kind: 'none' } })])).toEqual([['api', 'web']]);
  });
});
