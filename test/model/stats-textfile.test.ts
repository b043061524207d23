/**
 * The balancer's statistics textfile in the spec: `statsTextfile` (true, false or a strictly checked absolute `.prom`
 * path) and `statsIntervalSec`, with exact messages from the strict schemas the agent applies, the defaults the spec
 * stores (and a spec without a textfile left exactly as it was), and the runtime it brings.
 */
import { parseHostSpec } from '../../agent/spec-input';
import {
  BalancerSpec,
  DEFAULT_TEXTFILE_PATH,
  SpecError,
  StrictSpecSchemas,
  balancerNeedsRuntime,
  checkBalancerSpec,
  checkSpec,
  createSpecSchemas,
  formatIssue,
  parseRuntimeConfig,
  renderRuntimeConfig,
  stableJson,
  statsTextfileSettings,
} from '../../model';
import { DEFAULT_TEXTFILE_PATH as RUNTIME_DEFAULT_TEXTFILE_PATH } from '../../runtime/textfile';
import { lb1Json } from '../support/common';

type Json = Record<string, unknown>;

/** A valid balancer spec as JSON (what the agent receives) without a textfile, as every spec was before it existed. */
function base(extra: Json = {}): Json {
  return {
    ...lb1Json(),
    address: '10.0.1.2',
    ...extra,
    vips: [{ path: 's/web', name: 'web', ip: '10.0.1.100', port: 80, backends: [{ path: 's/web/web1', name: 'web1', ip: '10.0.1.11' }] }],
  };
}

function problems(input: unknown): string[] {
  const result = checkSpec(StrictSpecSchemas.BalancerSpecSchema, input, '(spec)', (v) => checkBalancerSpec(v));
  return result.ok ? [] : result.issues.map(formatIssue);
}

const parse = (input: unknown): BalancerSpec => StrictSpecSchemas.BalancerSpecSchema.parse(input);

const ALLOWED_PATH =
  "use true (/var/lib/prometheus/node-exporter/tula_dsr.prom), false (none), or an absolute path ending in '.prom' of letters, digits, '.', '_', '-' and '/', without '.' or '..' segments, at most 1024 characters";

describe('statsTextfile', () => {
  test.each<[string, unknown, string]>([
    ['a relative path', 'node-exporter/tula_dsr.prom', '"node-exporter/tula_dsr.prom"'],
    [
      'another extension (node_exporter reads *.prom only)',
      '/var/lib/prometheus/node-exporter/tula_dsr.txt',
      '"/var/lib/prometheus/node-exporter/tula_dsr.txt"',
    ],
    ['a ".." segment', '/var/lib/prometheus/../../etc/cron.d/x.prom', '"/var/lib/prometheus/../../etc/cron.d/x.prom"'],
    ['a "." segment', '/var/lib/./tula_dsr.prom', '"/var/lib/./tula_dsr.prom"'],
    ['an empty segment', '/var/lib//tula_dsr.prom', '"/var/lib//tula_dsr.prom"'],
    ['a folder, no file name', '/var/lib/prometheus/node-exporter/', '"/var/lib/prometheus/node-exporter/"'],
    ['only the extension', '/var/lib/.prom', '"/var/lib/.prom"'],
    ['a space', '/var/lib/tula dsr.prom', '"/var/lib/tula dsr.prom"'],
    ['shell syntax', '/var/lib/$(id).prom', '"/var/lib/$(id).prom"'],
    ['a quote', "/var/lib/it's.prom", '"/var/lib/it\'s.prom"'],
    ['a line break', '/var/lib/x.prom\n/etc/passwd.prom', '"/var/lib/x.prom\\n/etc/passwd.prom"'],
    ['non-ASCII letters', '/var/lib/tüla.prom', '"/var/lib/tüla.prom"'],
    ['the empty string', '', '""'],
    ['a number', 1, '1'],
    ['null', null, 'null'],
    ['an object', { path: '/x.prom' }, '{"path":"/x.prom"}'],
  ])('GIVEN %s WHEN checked THEN the message quotes it and says what is allowed', (_what, value, shown) => {
    expect(problems(base({ statsTextfile: value }))).toEqual([`s/lb1: statsTextfile: ${shown} is not a usable statistics textfile; ${ALLOWED_PATH}`]);
  });

  test('GIVEN a path of 1025 characters WHEN checked THEN it is refused; 1024 pass', () => {
    const path = (length: number) => `/${'a'.repeat(length - 6)}.prom`;
    expect(path(1024)).toHaveLength(1024);
    expect(problems(base({ statsTextfile: path(1024) }))).toEqual([]);
    expect(problems(base({ statsTextfile: path(1025) }))).toHaveLength(1);
  });

  test.each([['/var/lib/prometheus/node-exporter/tula_dsr.prom'], ['/srv/metrics/lb-1_a.b.prom'], ['/x.prom'], ['/var/lib/..prom/.hidden.prom']])(
    'GIVEN the path %j WHEN parsed THEN the spec keeps it, with the default interval of 15 s',
    (path) => {
      const spec = parse(base({ statsTextfile: path }));
      expect([spec.statsTextfile, spec.statsIntervalSec]).toEqual([path, 15]);
    },
  );

  test("GIVEN true WHEN parsed THEN the spec names node_exporter's Debian textfile folder (the plan shows where the file goes), every 15 s", () => {
    const spec = parse(base({ statsTextfile: true }));
    expect([spec.statsTextfile, spec.statsIntervalSec]).toEqual(['/var/lib/prometheus/node-exporter/tula_dsr.prom', 15]);
    expect(RUNTIME_DEFAULT_TEXTFILE_PATH).toBe(DEFAULT_TEXTFILE_PATH);
    expect(statsTextfileSettings(spec)).toEqual({ path: DEFAULT_TEXTFILE_PATH, intervalSec: 15 });
  });

  test.each([[false], [undefined]])(
    'GIVEN %j WHEN parsed THEN the spec JSON is byte-identical to a spec without the field (no plan changes, no runtime)',
    (value) => {
      const without = parse(base());
      const spec = parse(base({ statsTextfile: value }));
      expect(stableJson(spec)).toBe(stableJson(without));
      expect(stableJson(spec)).not.toMatch(/stats/);
      expect(statsTextfileSettings(spec)).toBeNull();
      expect(balancerNeedsRuntime(spec)).toBe(false);
    },
  );

  test('GIVEN a spec with a textfile WHEN parsed again (the agent re-validates what synth wrote) THEN it is unchanged', () => {
    const once = parse(base({ statsTextfile: true, statsIntervalSec: 60 }));
    expect(parse(JSON.parse(stableJson(once)))).toEqual(once);
  });

  test('GIVEN a Terraform token WHEN checked at synth THEN it is refused: where the statistics go is policy, known at synth', () => {
    const token = '${var.textfile}';
    const schemas = createSpecSchemas((v) => v === token);
    const result = checkSpec(schemas.BalancerSpecSchema, base({ statsTextfile: token, statsIntervalSec: token }), '(spec)');
    expect(result.ok ? [] : result.issues.map(formatIssue)).toEqual([
      's/lb1: statsTextfile: is a Terraform token, but statsTextfile must be known at synth; use a literal value',
      's/lb1: statsIntervalSec: is a Terraform token, but statsIntervalSec must be known at synth; use a literal value',
    ]);
  });

  test('GIVEN a textfile alone (no health checks, no least connections) THEN the balancer needs the runtime, and its configuration carries the textfile', () => {
    const spec = parse(base({ statsTextfile: '/srv/metrics/lb.prom', statsIntervalSec: 5 }));
    expect(balancerNeedsRuntime(spec)).toBe(true);
    const config = parseRuntimeConfig(renderRuntimeConfig(spec, { interfaceMac: '02:00:00:00:00:01', backendMacs: {} }));
    expect(statsTextfileSettings(config.balancer)).toEqual({ path: '/srv/metrics/lb.prom', intervalSec: 5 });
  });
});

describe('statsIntervalSec', () => {
  const allowed = (v: string) => `${v} is not allowed; use an integer number of seconds from 1 to 3600`;
  test.each<[unknown, string]>([
    [0, allowed('0')],
    [3601, allowed('3601')],
    [-15, allowed('-15')],
    [1.5, allowed('1.5')],
    ['15', allowed('"15"')],
    [null, allowed('null')],
  ])('GIVEN %j WHEN checked THEN %s', (value, message) => {
    expect(problems(base({ statsTextfile: true, statsIntervalSec: value }))).toEqual([`s/lb1: statsIntervalSec: ${message}`]);
  });

  test.each([[1], [60], [3600]])('GIVEN %j WHEN parsed THEN it is kept', (value) => {
    expect(parse(base({ statsTextfile: true, statsIntervalSec: value })).statsIntervalSec).toBe(value);
  });

  test.each([[undefined], [false]])('GIVEN an interval with statsTextfile %j WHEN checked THEN the interval is refused: it would do nothing', (textfile) => {
    expect(problems(base({ statsTextfile: textfile, statsIntervalSec: 30 }))).toEqual([
      's/lb1: statsIntervalSec: 30 has no effect: it is the interval of the statistics textfile, and statsTextfile is absent or false; set statsTextfile (true writes /var/lib/prometheus/node-exporter/tula_dsr.prom) or remove statsIntervalSec',
    ]);
  });
});

test('GIVEN a spec file with a bad textfile WHEN the agent reads it THEN it throws a SpecError with the same message', () => {
  const error = (() => {
    try {
      parseHostSpec(JSON.stringify(base({ statsTextfile: '/etc/../root/x.prom' })));
    } catch (e) {
      return e;
    }
  })();
  expect(error).toBeInstanceOf(SpecError);
  expect((error as SpecError).issues.map(formatIssue)).toEqual([
    `s/lb1: statsTextfile: "/etc/../root/x.prom" is not a usable statistics textfile; ${ALLOWED_PATH}`,
  ]);
});
