/**
 * The fast path of spec validation (model/fast-parse.ts) answers exactly as zod: it accepts what zod accepts, with
 * the same output (defaults, key order, absent optional keys), and hands everything else to zod. Checked on every
 * spec the render fixtures hold, raw (defaults left out) and as parsed, and on thousands of mutations of them.
 */
import { BALANCER_CASES, BACKEND_HOST_CASES, pairMember } from '../support/render-fixtures';
import { RuntimeConfigSchema, StrictSpecSchemas, createSpecSchemas, checkSpec } from '../../model';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fastParse } from '../../model/fast-parse';
import { HostStateSchema } from '../../agent/state';

type Json = unknown;
const clone = (v: Json): Json => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

/** Key order matters too: JSON.stringify keeps it, and toStrictEqual checks undefined-valued keys. */
function expectSame(schema: Parameters<typeof fastParse>[0], input: Json, label: string) {
  const zod = schema.safeParse(clone(input));
  const fast = fastParse(schema, clone(input));
  if (!zod.success) {
    if (process.env.DEBUG_FAST) console.log(label, JSON.stringify(zod.error.issues).slice(0, 400));
    if (fast) throw new Error(`${label}: the fast path accepted what zod refuses: ${JSON.stringify(input)?.slice(0, 300)}`);
    return false;
  }
  if (!fast) throw new Error(`${label}: the fast path refused what zod accepts: ${JSON.stringify(input)?.slice(0, 300)}`);
  expect(JSON.stringify(fast.value)).toBe(JSON.stringify(zod.data));
  expect(fast.value).toStrictEqual(zod.data);
  return true;
}

const healthChecks = [
  { kind: 'tcp', port: 8080, intervalSec: 2, timeoutSec: 1, fall: 2, rise: 3 },
  { kind: 'http', path: '/health', expectStatus: '200-399' },
  { kind: 'udp', port: 53, payloadHex: 'ABCD' },
  { kind: 'none' },
];

/** The fixtures' specs as parsed, each balancer also with health checks, as a pair member and with a textfile. */
function validSpecs(): Json[] {
  const balancers = BALANCER_CASES.map((c) => c.spec as Json);
  const more = BALANCER_CASES.slice(0, 4).flatMap((c, i) => {
    const spec = c.spec;
    const vips = spec.vips.map((v, j) => ({
      ...v,
      healthCheck: v.port === '*' ? undefined : healthChecks[(i + j) % healthChecks.length],
      backends: v.backends.map((b, k) => (k === 0 ? { ...b, healthCheck: healthChecks[k % 2] } : b)),
    }));
    return [{ ...spec, vips }, pairMember(spec), { ...spec, statsTextfile: true }, { ...spec, statsTextfile: '/var/lib/node/tula.prom', statsIntervalSec: 30 }];
  });
  return [...balancers, ...more, ...BACKEND_HOST_CASES.map((c) => c.spec)];
}

/** The same specs with every key that has a default left out, as a construct or a hand-written spec gives them. */
function withoutDefaults(spec: Json): Json {
  const defaulted: Record<string, readonly string[]> = {
    ssh: ['port', 'user'],
    vips: ['protocol', 'mode', 'algorithm', 'flowTimeoutSec'],
    backends: ['weight'],
    '': ['persist', 'statsIntervalSec'],
  };
  const walk = (v: Json, parent: string): Json => {
    if (Array.isArray(v)) return v.map((x) => walk(x, parent));
    if (v === null || typeof v !== 'object') return v;
    return Object.fromEntries(
      Object.entries(v)
        .filter(([k]) => !defaulted[parent]?.includes(k))
        .map(([k, x]) => [k, walk(x, k)]),
    );
  };
  return walk(spec, '');
}

/** A small deterministic generator (mulberry32). */
function random(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ODD_VALUES: Json[] = [
  undefined,
  null,
  '',
  0,
  -1,
  1.5,
  65536,
  'x',
  [],
  {},
  true,
  false,
  '10.0.1.200',
  '*',
  '1.2.3',
  'fd00:1::99',
  'a\nb',
  'tcp',
  'l3',
  1000,
];

/** One mutation: a key deleted, a value replaced, an unknown key added, or an array emptied. */
function mutate(spec: Json, next: () => number): Json {
  const copy = clone(spec) as Record<string, unknown>;
  const containers: Record<string, unknown>[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') {
      containers.push(v as Record<string, unknown>);
      Object.values(v).forEach(walk);
    }
  };
  walk(copy);
  const target = containers[Math.floor(next() * containers.length)];
  const keys = Object.keys(target);
  const key = keys[Math.floor(next() * keys.length)];
  const choice = next();
  if (choice < 0.3) delete target[key];
  else if (choice < 0.85) target[key] = clone(ODD_VALUES[Math.floor(next() * ODD_VALUES.length)]);
  else if (choice < 0.95) target[next() < 0.5 ? 'cookie' : 'extra'] = 1;
  else if (Array.isArray(target[key])) target[key] = [];
  else target[key] = [target[key]];
  return copy;
}

describe('fastParse', () => {
  test('GIVEN every fixture spec, as parsed and without its defaults WHEN parsed THEN the fast path gives what zod gives', () => {
    const specs = validSpecs();
    expect(specs.length).toBeGreaterThan(20);
    for (const spec of specs) {
      expect(expectSame(StrictSpecSchemas.HostSpecSchema, spec, 'as parsed')).toBe(true);
      expect(expectSame(StrictSpecSchemas.HostSpecSchema, withoutDefaults(spec), 'without defaults')).toBe(true);
    }
  });

  test('GIVEN thousands of mutated specs WHEN parsed THEN the fast path accepts exactly what zod accepts, with the same output', () => {
    const specs = validSpecs();
    const next = random(17);
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 4000; i++) {
      const base = specs[i % specs.length];
      let spec = mutate(next() < 0.5 ? base : withoutDefaults(base), next);
      if (next() < 0.3) spec = mutate(spec, next);
      if (expectSame(StrictSpecSchemas.HostSpecSchema, spec, `mutation ${i}`)) accepted++;
      else refused++;
    }
    // both kinds of answer were really exercised
    expect(accepted).toBeGreaterThan(150);
    expect(refused).toBeGreaterThan(1000);
  });

  test('GIVEN keys that name Object.prototype members or __proto__ WHEN parsed THEN the same answers as zod', () => {
    const base = validSpecs()[0] as Record<string, unknown>;
    const text = JSON.stringify(base);
    // JSON.parse makes `__proto__` an own key; the others are inherited names (an unknown key either way)
    for (const key of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
      const spec = JSON.parse(`{"${key}":{"x":1},${text.slice(1)}`) as Json;
      expect(expectSame(StrictSpecSchemas.HostSpecSchema, spec, `with ${key}`)).toBe(false);
    }
    // inherited names read on an object that lacks them: the valid spec as it is, still accepted
    expect(expectSame(StrictSpecSchemas.HostSpecSchema, JSON.parse(text) as Json, 'plain')).toBe(true);
  });

  test('GIVEN node with code generation from strings turned off WHEN a spec is parsed THEN the fast path hands every object to zod, with the same answer', () => {
    // the compiled code (npm test builds first): a child process is the only way to run without code generation
    const dist = join(__dirname, '..', '..', 'dist', 'model');
    const script = [
      `const m = require(${JSON.stringify(join(dist, 'index.js'))});`,
      `const { fastParse } = require(${JSON.stringify(join(dist, 'fast-parse.js'))});`,
      "const spec = JSON.parse(require('fs').readFileSync(0, 'utf8'));",
      "let generation = 'on'; try { new Function(''); } catch { generation = 'off'; }",
      'const fast = fastParse(m.StrictSpecSchemas.HostSpecSchema, spec);',
      'const zod = m.StrictSpecSchemas.HostSpecSchema.safeParse(spec);',
      'process.stdout.write(JSON.stringify({ generation, fast: fast && fast.value, zod: zod.data }));',
    ].join('\n');
    const r = spawnSync(process.execPath, ['--disallow-code-generation-from-strings', '-e', script], { input: JSON.stringify(BALANCER_CASES[0].spec) });
    expect(r.stderr.toString()).toBe('');
    const out = JSON.parse(r.stdout.toString()) as { generation: string; fast?: unknown; zod?: unknown };
    expect(out.generation).toBe('off');
    expect(out.fast).toBeDefined();
    expect(out.fast).toEqual(out.zod);
  });

  test('GIVEN schemas that accept Terraform tokens (as constructs build them) WHEN parsed THEN the same answers', () => {
    const TOKEN = '${TfToken[TOKEN.1]}';
    const schemas = createSpecSchemas((v) => v === TOKEN);
    const next = random(5);
    for (const spec of validSpecs()) {
      const tokened = clone(spec) as { ssh: { host: string }; vips?: { ip: string }[] };
      tokened.ssh.host = TOKEN;
      if (tokened.vips?.[0]) tokened.vips[0].ip = TOKEN;
      expect(expectSame(schemas.HostSpecSchema, tokened, 'tokens')).toBe(true);
      for (let i = 0; i < 20; i++) expectSame(schemas.HostSpecSchema, mutate(tokened, next), 'tokens, mutated');
    }
  });

  test('GIVEN a spec with mistakes WHEN checked THEN checkSpec reports them as zod words them', () => {
    const spec = clone(BALANCER_CASES[0].spec) as { vips: { ip: string; port: unknown; cookie?: string }[] };
    spec.vips[0].ip = '224.0.0.1';
    spec.vips[0].port = 0;
    spec.vips[0].cookie = 'x';
    const result = checkSpec(StrictSpecSchemas.HostSpecSchema, spec, '(spec)');
    expect(result.ok).toBe(false);
    expect(!result.ok && result.issues.map((i) => `${i.field}: ${i.message}`)).toEqual([
      'ip: "224.0.0.1" is a multicast address (224.0.0.0/4); use a unicast IPv4 address',
      "port: 0 is not allowed; use an integer from 1 to 65535, or '*' for all ports",
      expect.stringMatching(/^cookie: "cookie" is not a known property/),
    ]);
  });

  test('GIVEN host state files WHEN parsed THEN the same answers', () => {
    const states = [
      {
        version: 2,
        kind: 'backend',
        name: 'web1',
        generation: 'abc',
        addresses: [
          { ip: '10.0.1.100', prefix: 32, dev: 'lo' },
          { ip: 'fd00:1::100', prefix: 128, dev: 'lo', retiredAt: 1700000000 },
        ],
        tunnels: [{ name: 'ipip0', local: '10.0.1.11', remote: 'any' }],
        files: ['/etc/sysctl.d/90-tula-dsr.conf'],
        dirs: ['/etc/tula-dsr'],
        originalSysctls: { 'net.ipv4.conf.all.arp_ignore': '0', 'net.ipv4.conf.ipip0.rp_filter': null },
        modules: ['ipip'],
        nft: { 'netdev tula_dsr': { rulesetHash: 'a', listingHash: 'b' } },
        unit: { name: 'tula-dsr-backend.service', enabled: true },
        runtime: { service: 'supervisor', statsTextfile: '/var/lib/node/tula.prom' },
        keepalived: { service: 'direct' },
      },
      {
        version: 1,
        kind: 'balancer',
        name: 'lb1',
        generation: 'g',
        spec: '{}',
        addresses: [],
        tunnels: [],
        files: [],
        dirs: [],
        originalSysctls: {},
        modules: [],
        nft: {},
        unit: null,
      },
    ];
    const next = random(3);
    for (const state of states) {
      expect(expectSame(HostStateSchema, state, 'state')).toBe(true);
      for (let i = 0; i < 300; i++) expectSame(HostStateSchema, mutate(state, next), 'state, mutated');
    }
  });

  test('GIVEN runtime configurations WHEN parsed THEN the same answers', () => {
    const next = random(9);
    for (const c of BALANCER_CASES) {
      const config = {
        version: 1,
        balancer: c.spec,
        facts: { interfaceMac: '52:54:00:00:00:01', backendMacs: { '10.0.1.11': '52:54:00:00:00:11' } },
        leastConnections: { intervalMs: 200 },
      };
      expect(expectSame(RuntimeConfigSchema, config, 'runtime config')).toBe(true);
      for (let i = 0; i < 20; i++) expectSame(RuntimeConfigSchema, mutate(config, next), 'runtime config, mutated');
    }
  });
});
