/**
 * Health-check configuration in the model: what the agent validates (the strict schemas plus the cross-object
 * checks), the defaults it fills in, and the messages for every kind of bad value.
 */
import {
  HEALTH_CHECK_KINDS,
  StrictSpecSchemas,
  checkBalancerSpec,
  checkSpec,
  createSpecSchemas,
  formatIssue,
  parseStatusList,
  statusInList,
} from '../../model';
import { lb1Json } from '../support/common';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function spec(check?: unknown, backendCheck?: unknown, port: number | '*' = 80): Json {
  return {
    ...lb1Json(),
    subnet: '10.0.1.0/24',
    vips: [
      {
        path: 's/web',
        name: 'web',
        ip: '10.0.1.100',
        port,
        ...(check !== undefined && { healthCheck: check }),
        backends: [
          { path: 's/web/web1', name: 'web1', ip: '10.0.1.11', ...(backendCheck !== undefined && { healthCheck: backendCheck }) },
          { path: 's/web/web2', name: 'web2', ip: '10.0.1.12' },
        ],
      },
    ],
  };
}

function check(input: Json) {
  return checkSpec(StrictSpecSchemas.BalancerSpecSchema, input, '(spec)', (v) => checkBalancerSpec(v));
}

/** Every problem, formatted as the agent prints them; [] when the spec is valid. */
const problems = (input: Json): string[] => {
  const result = check(input);
  return result.ok ? [] : result.issues.map(formatIssue);
};

/** The VIP's check as the agent receives it after validation. */
const parsedCheck = (healthCheck: unknown) => {
  const result = check(spec(healthCheck));
  if (!result.ok) throw new Error(result.issues.map(formatIssue).join('\n'));
  return result.value.vips[0].healthCheck;
};

describe('defaults', () => {
  test('GIVEN a VIP without healthCheck WHEN validated THEN the spec has none (kind none, and unchanged JSON for existing stacks)', () => {
    const result = check(spec());
    expect(result.ok && 'healthCheck' in result.value.vips[0]).toBe(false);
  });

  test.each<[string, Json, Json]>([
    ['none', { kind: 'none' }, { kind: 'none' }],
    ['tcp', { kind: 'tcp' }, { kind: 'tcp', intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2 }],
    ['http', { kind: 'http' }, { kind: 'http', intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2, path: '/', expectStatus: '200-399' }],
    [
      'udp',
      { kind: 'udp', payloadHex: 'C0FFEE', expectHex: 'BEEF' },
      { kind: 'udp', intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2, payloadHex: 'c0ffee', expectHex: 'beef' },
    ],
  ])('GIVEN kind %s WHEN validated THEN the defaults are filled in', (kind, input, expected) => {
    expect(HEALTH_CHECK_KINDS).toContain(kind);
    expect(parsedCheck(input)).toEqual(expected);
  });

  test.each([
    [0.2, 0.1],
    [0.3, 0.1],
    [0.5, 0.2],
    [1, 0.5],
    [1.5, 0.7],
    [2, 1],
    [60, 1],
  ])('GIVEN intervalSec %d and no timeoutSec WHEN validated THEN timeoutSec is %d (1, or half the interval in tenths)', (intervalSec, timeoutSec) => {
    expect(parsedCheck({ kind: 'tcp', intervalSec })).toMatchObject({ intervalSec, timeoutSec });
  });

  test.each<Json>([
    { kind: 'tcp', port: 8080, intervalSec: 0.5, timeoutSec: 0.3, fall: 1, rise: 100 },
    { kind: 'http', path: '/healthz?full=1', expectStatus: '200,204,301-302', host: 'www.example.com:8080' },
    { kind: 'udp', payloadHex: 'ab', expectHex: 'cd' },
    { kind: 'none' },
  ])('GIVEN the validated check %j WHEN the agent validates it again THEN it is unchanged (synth output re-parses to itself)', (input) => {
    const once = parsedCheck(input);
    expect(parsedCheck(once)).toEqual(once);
  });

  test('GIVEN a backend with its own check WHEN validated THEN it keeps its own check and the other backend has none', () => {
    const result = check(spec(undefined, { kind: 'tcp', port: 9000 }));
    expect(result.ok && result.value.vips[0].backends.map((b) => b.healthCheck)).toEqual([
      { kind: 'tcp', port: 9000, intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2 },
      undefined,
    ]);
  });
});

describe('bad values: each gets its own exact message', () => {
  const at = (field: string, message: string) => `s/web: healthCheck${field}: ${message}`;
  test.each<[string, unknown, string[]]>([
    ['a string', 'tcp', [at('', `"tcp" is not a health check; use an object such as { kind: 'tcp' } or { kind: 'http', path: '/healthz' }`)]],
    ['null', null, [at('', `null is not a health check; use an object such as { kind: 'tcp' } or { kind: 'http', path: '/healthz' }`)]],
    ['no kind', { port: 80 }, [at('.kind', "is required; use one of 'none', 'tcp', 'http', 'udp'")]],
    ['kind icmp', { kind: 'icmp' }, [at('.kind', `"icmp" is not a supported health check kind; use one of 'none', 'tcp', 'http', 'udp'`)]],
    ['kind TCP', { kind: 'TCP' }, [at('.kind', `"TCP" is not a supported health check kind; use one of 'none', 'tcp', 'http', 'udp'`)]],
    ['port 0', { kind: 'tcp', port: 0 }, [at('.port', '0 is not allowed; use an integer from 1 to 65535')]],
    ['port "80"', { kind: 'tcp', port: '80' }, [at('.port', '"80" is not allowed; use an integer from 1 to 65535')]],
    ...[0.1, 2.55, 3601, '2s'].map((intervalSec): [string, unknown, string[]] => [
      `intervalSec ${JSON.stringify(intervalSec)}`,
      { kind: 'tcp', intervalSec },
      [at('.intervalSec', `${JSON.stringify(intervalSec)} is not allowed; use a number of seconds from 0.2 to 3600, in steps of 0.1 (such as 0.5 or 2)`)],
    ]),
    [
      'timeoutSec 0',
      { kind: 'tcp', timeoutSec: 0 },
      [at('.timeoutSec', '0 is not allowed; use a number of seconds from 0.1 to 60, in steps of 0.1, below intervalSec')],
    ],
    [
      'timeoutSec 3 with the default interval',
      { kind: 'tcp', timeoutSec: 3 },
      [at('.timeoutSec', '3 is not less than intervalSec 2 (the default); a probe must time out before the next one is due')],
    ],
    [
      'timeoutSec equal to intervalSec',
      { kind: 'tcp', intervalSec: 1, timeoutSec: 1 },
      [at('.timeoutSec', '1 is not less than intervalSec 1; a probe must time out before the next one is due')],
    ],
    ['fall 0', { kind: 'tcp', fall: 0 }, [at('.fall', '0 is not allowed; use an integer from 1 to 100 (failed probes in a row that mark a backend down)')]],
    [
      'fall 2.5',
      { kind: 'tcp', fall: 2.5 },
      [at('.fall', '2.5 is not allowed; use an integer from 1 to 100 (failed probes in a row that mark a backend down)')],
    ],
    [
      'rise 101',
      { kind: 'tcp', rise: 101 },
      [at('.rise', '101 is not allowed; use an integer from 1 to 100 (passed probes in a row that mark a backend up again)')],
    ],
    ...['healthz', '/a b', '/a\r\nX-Injected: 1', '/%zz', '/é'].map((path): [string, unknown, string[]] => [
      `path ${JSON.stringify(path)}`,
      { kind: 'http', path },
      [
        at(
          '.path',
          `${JSON.stringify(path)} is not a usable path; use an absolute path such as '/healthz', of letters, digits and -._~!$&'()*+,;=:@/? (encode anything else as %XX)`,
        ),
      ],
    ]),
    [
      'a path of 1025 characters',
      { kind: 'http', path: `/${'a'.repeat(1024)}` },
      [at('.path', '"/aaaaaaaaaaaaaaaaaaaaaaa"… (1025 characters) is too long; use a path of at most 1024 characters')],
    ],
    ...['200-99', '99', '600', '200 - 399', '2xx', '', '200,,204'].map((status): [string, unknown, string[]] => [
      `expectStatus ${JSON.stringify(status)}`,
      { kind: 'http', expectStatus: status },
      [
        at(
          '.expectStatus',
          `${JSON.stringify(status)} is not a list of HTTP status codes; use codes and ranges from 100 to 599 separated by commas, without spaces, such as '200-399' or '200,204,301-302'`,
        ),
      ],
    ]),
    ...['a b', 'www.example.com:99999', 'x\r\nEvil: 1', 'http://www.example.com'].map((host): [string, unknown, string[]] => [
      `host ${JSON.stringify(host)}`,
      { kind: 'http', host },
      [
        at(
          '.host',
          `${JSON.stringify(host)} is not a usable Host header; use a DNS name or an IPv4 address, optionally with ':port', such as 'www.example.com'`,
        ),
      ],
    ]),
    [
      'udp without payload',
      { kind: 'udp' },
      [at('.payloadHex', "is required for a 'udp' check: the datagram to send, as hex digits (a DNS query, for example)")],
    ],
    ...['abc', 'zz', '', '0x00'].map((payloadHex): [string, unknown, string[]] => [
      `payloadHex ${JSON.stringify(payloadHex)}`,
      { kind: 'udp', payloadHex },
      [at('.payloadHex', `${JSON.stringify(payloadHex)} is not usable as a payload; use an even number of hex digits, 1 to 512 bytes, such as 'c0ffee'`)],
    ]),
    [
      'a payload of 513 bytes',
      { kind: 'udp', payloadHex: 'ab'.repeat(513) },
      [at('.payloadHex', '"abababababababababababab"… (513 bytes) is too long as a payload; use at most 512 bytes')],
    ],
    [
      'expectHex "xyz"',
      { kind: 'udp', payloadHex: 'ab', expectHex: 'xyz' },
      [at('.expectHex', `"xyz" is not usable as expected reply bytes; use an even number of hex digits, 1 to 512 bytes, such as 'c0ffee'`)],
    ],
    [
      'path on a tcp check',
      { kind: 'tcp', path: '/x' },
      [at('.path', `"/x" is set on a 'tcp' check, but path only applies to 'http' checks; remove it or use kind 'http'`)],
    ],
    [
      'payloadHex on an http check',
      { kind: 'http', payloadHex: 'ab' },
      [at('.payloadHex', `"ab" is set on a 'http' check, but payloadHex only applies to 'udp' checks; remove it or use kind 'udp'`)],
    ],
    [
      'fall on a none check',
      { kind: 'none', fall: 2 },
      [at('.fall', "2 is set on a health check of kind 'none', which sends no probes; remove it, or choose kind 'tcp', 'http' or 'udp'")],
    ],
    [
      'an unknown key, HTTP-looking',
      { kind: 'http', headers: { 'X-A': '1' } },
      [
        at(
          '.headers',
          '"headers" is not a known property; known properties are kind, port, intervalSec, timeoutSec, fall, rise, path, expectStatus, host, payloadHex, expectHex',
        ),
      ],
    ],
  ])('GIVEN healthCheck with %s WHEN validated THEN exactly that problem is reported', (_what, healthCheck, expected) => {
    expect(problems(spec(healthCheck))).toEqual(expected);
  });

  test('GIVEN several mistakes in one check and one on a backend WHEN validated THEN each is reported at its field and object', () => {
    expect(problems(spec({ kind: 'http', intervalSec: 0, fall: -1, path: 'x', bogus: 1 }, { kind: 'udp', rise: 0 }))).toEqual([
      's/web: healthCheck.bogus: "bogus" is not a known property; known properties are kind, port, intervalSec, timeoutSec, fall, rise, path, expectStatus, host, payloadHex, expectHex',
      's/web: healthCheck.intervalSec: 0 is not allowed; use a number of seconds from 0.2 to 3600, in steps of 0.1 (such as 0.5 or 2)',
      's/web: healthCheck.fall: -1 is not allowed; use an integer from 1 to 100 (failed probes in a row that mark a backend down)',
      `s/web: healthCheck.path: "x" is not a usable path; use an absolute path such as '/healthz', of letters, digits and -._~!$&'()*+,;=:@/? (encode anything else as %XX)`,
      's/web/web1: healthCheck.rise: 0 is not allowed; use an integer from 1 to 100 (passed probes in a row that mark a backend up again)',
      "s/web/web1: healthCheck.payloadHex: is required for a 'udp' check: the datagram to send, as hex digits (a DNS query, for example)",
    ]);
  });
});

describe('values at the limits', () => {
  test.each<[string, Json]>([
    ['intervalSec 0.2 with timeoutSec 0.1', { kind: 'tcp', intervalSec: 0.2, timeoutSec: 0.1 }],
    ['intervalSec 3600 with timeoutSec 60', { kind: 'tcp', intervalSec: 3600, timeoutSec: 60 }],
    ['fall and rise 1', { kind: 'tcp', fall: 1, rise: 1 }],
    ['fall and rise 100', { kind: 'tcp', fall: 100, rise: 100 }],
    ['port 1 and 65535', { kind: 'tcp', port: 65535 }],
    ['a path of 1024 characters', { kind: 'http', path: `/${'a'.repeat(1023)}` }],
    ['a path with a query and %-encoding', { kind: 'http', path: "/health%20check?x=1&y=a:b@c/d,e;f=g(h)*!$'+~" }],
    ['statuses 100-599', { kind: 'http', expectStatus: '100-599' }],
    ['an IPv4 Host header with a port', { kind: 'http', host: '10.0.1.100:8080' }],
    ['a payload of 512 bytes', { kind: 'udp', payloadHex: 'ab'.repeat(512), expectHex: 'cd'.repeat(512) }],
  ])('GIVEN %s WHEN validated THEN it is accepted', (_what, healthCheck) => {
    expect(problems(spec(healthCheck))).toEqual([]);
  });
});

describe("all-ports ('*') VIPs", () => {
  test.each(['tcp', 'http'])('GIVEN a %s check without port on a * VIP WHEN validated THEN the port is required', (kind) => {
    expect(problems(spec({ kind }, undefined, '*'))).toEqual([
      "s/web: healthCheck.port: is required on an all-ports ('*') VIP: name the port to probe, such as { kind: 'tcp', port: 80 }",
    ]);
  });

  test('GIVEN a backend check without port on a * VIP WHEN validated THEN the port is required at the backend', () => {
    expect(problems(spec({ kind: 'tcp', port: 22 }, { kind: 'udp', payloadHex: '00' }, '*'))).toEqual([
      "s/web/web1: healthCheck.port: is required on a backend of an all-ports ('*') VIP: name the port to probe, such as { kind: 'tcp', port: 80 }",
    ]);
  });

  test.each<[string, unknown, unknown]>([
    ['a check with a port', { kind: 'tcp', port: 443 }, undefined],
    ['kind none', { kind: 'none' }, undefined],
    ['no check', undefined, undefined],
    ['a backend exempted with kind none', { kind: 'tcp', port: 443 }, { kind: 'none' }],
  ])('GIVEN %s on a * VIP WHEN validated THEN it is accepted', (_what, vipCheck, backendCheck) => {
    expect(problems(spec(vipCheck, backendCheck, '*'))).toEqual([]);
  });
});

describe('Terraform tokens at synth', () => {
  const TOKEN = '${TfToken[TOKEN.1]}';
  const schemas = createSpecSchemas((v) => v === TOKEN);
  const synthProblems = (healthCheck: Json) => {
    const result = checkSpec(schemas.BalancerSpecSchema, spec(healthCheck), '(spec)');
    return result.ok ? [] : result.issues.map(formatIssue);
  };

  test.each(['port', 'host'])('GIVEN a token as %s WHEN validated at synth THEN it is accepted (the agent checks the value)', (field) => {
    expect(synthProblems({ kind: 'http', [field]: TOKEN })).toEqual([]);
  });

  test.each(['intervalSec', 'timeoutSec', 'fall', 'rise', 'path', 'expectStatus'])(
    'GIVEN a token as %s WHEN validated at synth THEN it must be known',
    (field) => {
      expect(synthProblems({ kind: 'http', [field]: TOKEN })).toEqual([
        `s/web: healthCheck.${field}: is a Terraform token, but ${field} must be known at synth; use a literal value`,
      ]);
    },
  );

  test('GIVEN a token as port WHEN the agent validates (strict schemas) THEN it is refused', () => {
    expect(problems(spec({ kind: 'tcp', port: TOKEN }))).toEqual([`s/web: healthCheck.port: "${TOKEN}" is not allowed; use an integer from 1 to 65535`]);
  });
});

describe('status lists', () => {
  test.each<[string, [number, number][]]>([
    ['200', [[200, 200]]],
    ['200-399', [[200, 399]]],
    [
      '200,204,301-302',
      [
        [200, 200],
        [204, 204],
        [301, 302],
      ],
    ],
    ['100-599', [[100, 599]]],
  ])('GIVEN %j WHEN parsed THEN its ranges are %j', (text, ranges) => {
    expect(parseStatusList(text)).toEqual(ranges);
  });

  test.each<[number, boolean]>([
    [199, false],
    [200, true],
    [204, true],
    [205, false],
    [301, true],
    [303, false],
  ])('GIVEN "200,204,301-302" WHEN status %d arrives THEN it passes: %s', (status, passes) => {
    expect(statusInList(parseStatusList('200,204,301-302')!, status)).toBe(passes);
  });
});
