/**
 * Hostile values. Every spec field that could reach a shell or nft gets `; rm -rf /`, `$(touch …)`,
 * backticks, quotes and a newline: the strict spec validation rejects each with a message that quotes the value,
 * before any connection is made. Fields that are free text by nature (local key/known_hosts paths, construct
 * paths) either fail harmlessly (a local file that does not exist) or round-trip byte for byte through the one
 * quoting function into files and rulesets on a real host, where nothing gets executed.
 */
import { existsSync } from 'node:fs';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { planBackendHost, BACKEND_SYSCTL_FILE, BALANCER_RULESET_FILE } from '../../model';
import type { BackendHostSpec } from '../../model';
import { parseHostSpec } from '../../agent/spec-input';
import { shellQuote } from '../../model/shell';
import { assertDistFresh, backendSpec, balancerSpec, run, runCli, sh, writeSpec, expectNoStackTrace } from './helpers';

jest.setTimeout(30_000);

const SENTINEL = `/tmp/tula-pwned-${process.pid}`;
const HOSTILE = ['; rm -rf /', `$(touch ${SENTINEL})`, `\`touch ${SENTINEL}\``, `it's "quoted"`, 'eth0\ntouch x'] as const;

let lab: Lab;
let lb: LabHost;
let be1: LabHost;
let be2: LabHost;

beforeAll(async () => {
  assertDistFresh();
  lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }, { name: 'be2' }] });
  ({ lb, be1, be2 } = lab.hosts);
});

afterAll(async () => {
  await lab?.teardown();
});

/** Specs are edited field by field with hostile values, so they are loosely typed here. */
type Spec = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const backend = (): Spec => backendSpec(lab, be1, [{ ip: '10.99.9.10', mssClamp: undefined }]);
const balancer = (): Spec => balancerSpec(lab, lb, [{ name: 'web', ip: '10.99.9.10', backends: [{ name: 'be1', ip: be1.ip, mac: be1.mac }] }]);

/** [spec kind, field as the report names it, construct path of the object at fault, setter]. */
const STRICT_FIELDS: [string, string, string, (s: Spec, v: string) => void][] = [
  ['backend', 'name', 'lab/be1', (s, v) => (s.name = v)],
  ['backend', 'ssh.host', 'lab/be1', (s, v) => (s.ssh.host = v)],
  ['backend', 'ssh.port', 'lab/be1', (s, v) => (s.ssh.port = v)],
  ['backend', 'ssh.user', 'lab/be1', (s, v) => (s.ssh.user = v)],
  ['backend', 'ssh.hostKey', 'lab/be1', (s, v) => (s.ssh.hostKey = v)],
  ['backend', 'address', 'lab/be1', (s, v) => (s.address = v)],
  ['backend', 'persist', 'lab/be1', (s, v) => (s.persist = v)],
  ['backend', 'ip', 'lab/vip0/be1', (s, v) => (s.services[0].ip = v)],
  ['backend', 'port', 'lab/vip0/be1', (s, v) => (s.services[0].port = v)],
  ['backend', 'protocol', 'lab/vip0/be1', (s, v) => (s.services[0].protocol = v)],
  ['backend', 'mode', 'lab/vip0/be1', (s, v) => (s.services[0].mode = v)],
  ['backend', 'mssClamp', 'lab/vip0/be1', (s, v) => (s.services[0].mssClamp = v)],
  ['balancer', 'name', 'lab/lb', (s, v) => (s.name = v)],
  ['balancer', 'interface', 'lab/lb', (s, v) => (s.interface = v)],
  ['balancer', 'address', 'lab/lb', (s, v) => (s.address = v)],
  ['balancer', 'subnet', 'lab/lb', (s, v) => (s.subnet = v)],
  ['balancer', 'mac', 'lab/lb', (s, v) => (s.mac = v)],
  ['balancer', 'name', 'lab/web', (s, v) => (s.vips[0].name = v)],
  ['balancer', 'ip', 'lab/web', (s, v) => (s.vips[0].ip = v)],
  ['balancer', 'port', 'lab/web', (s, v) => (s.vips[0].port = v)],
  ['balancer', 'protocol', 'lab/web', (s, v) => (s.vips[0].protocol = v)],
  ['balancer', 'mode', 'lab/web', (s, v) => (s.vips[0].mode = v)],
  ['balancer', 'algorithm', 'lab/web', (s, v) => (s.vips[0].algorithm = v)],
  ['balancer', 'flowTimeoutSec', 'lab/web', (s, v) => (s.vips[0].flowTimeoutSec = v)],
  ['balancer', 'mssClamp', 'lab/web', (s, v) => (s.vips[0].mssClamp = v)],
  ['balancer', 'name', 'lab/web/be1', (s, v) => (s.vips[0].backends[0].name = v)],
  ['balancer', 'ip', 'lab/web/be1', (s, v) => (s.vips[0].backends[0].ip = v)],
  ['balancer', 'port', 'lab/web/be1', (s, v) => (s.vips[0].backends[0].port = v)],
  ['balancer', 'weight', 'lab/web/be1', (s, v) => (s.vips[0].backends[0].weight = v)],
  ['balancer', 'mac', 'lab/web/be1', (s, v) => (s.vips[0].backends[0].mac = v)],
];

const CASES = STRICT_FIELDS.flatMap(([kind, field, owner, set]) => HOSTILE.map((value) => [kind, field, owner, JSON.stringify(value), set, value] as const));

describe('hostile values are rejected before anything runs', () => {
  test.each(CASES)('%s %s (%s) = %s is rejected by the strict spec validation', async (kind, field, owner, _shown, set, value) => {
    const spec = kind === 'backend' ? backend() : balancer();
    set(spec, value);

    const result = await run(spec, 'apply');

    expect(result.error?.kind).toBe('spec');
    expect(result.error?.message).toMatch(/^tula-dsr found 1 problem in the configuration:\n {2}- /);
    expect(result.error?.message).toContain(`\n  - ${owner}: ${field}: ${JSON.stringify(value)} `);
    expect(result.roundTrips).toBe(0);
    expect(result.target).toBeUndefined();
  });

  test.each(['ssh.privateKeyPath', 'ssh.knownHostsFile'])(
    '%s: a newline is rejected; other hostile paths are only ever read locally, and fail',
    async (field) => {
      for (const value of HOSTILE) {
        const spec = backend();
        if (field === 'ssh.privateKeyPath') spec.ssh.privateKeyPath = value;
        else {
          delete spec.ssh.hostKey;
          spec.ssh.knownHostsFile = value;
        }
        const result = await run(spec, 'apply');
        if (value.includes('\n')) {
          expect(result.error?.message).toContain(
            `\n  - lab/be1: ${field}: ${JSON.stringify(value)} is not a usable file path; use a path without NUL or line breaks`,
          );
        } else if (field === 'ssh.privateKeyPath') {
          expect(result.error).toEqual({ kind: 'private-key', message: `root@${be1.ip}:22: cannot read private key ${value}: ENOENT` });
        } else {
          expect(result.error).toEqual({ kind: 'config', message: `root@${be1.ip}:22: cannot read knownHostsFile ${value}: ENOENT` });
        }
        expect(result.roundTrips).toBe(0);
      }
    },
  );

  test.each([
    ['backend', 'path'],
    ['backend', 'services[0].path'],
    ['balancer', 'path'],
    ['balancer', 'vips[0].path'],
    ['balancer', 'vips[0].backends[0].path'],
  ])('%s %s: a construct path with a line break (or another control character) is rejected', async (kind, field) => {
    for (const value of ['lab/x\nnet.ipv4.ip_forward = 1', 'lab/x\radd table ip pwned', 'lab/\tx']) {
      const spec = kind === 'backend' ? backend() : balancer();
      const parts = field.split(/\.|\[(\d+)\]\.?/).filter(Boolean);
      let target = spec;
      // The problem is reported at the nearest enclosing object whose own path is clean, with the rest as field.
      let where = '(spec)';
      let whereDepth = 0;
      parts.slice(0, -1).forEach((p, i) => {
        if (typeof target.path === 'string') [where, whereDepth] = [target.path, i];
        target = target[p];
      });
      if (parts.length > 1 && typeof target.path === 'string' && /^\d+$/.test(parts[parts.length - 2]) === false)
        [where, whereDepth] = [target.path, parts.length - 1];
      target[parts[parts.length - 1]] = value;
      const rest = parts
        .slice(whereDepth)
        .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
        .join('')
        .replace(/^\./, '');
      const result = await run(spec, 'apply');
      expect(result.error?.kind).toBe('spec');
      expect(result.error?.message).toContain(
        `\n  - ${where}: ${rest}: ${JSON.stringify(value)} is not a usable construct path; it is written into comments of config files and nft rulesets, so use a single line of printable characters (no control character such as a line break)`,
      );
      expect(result.roundTrips).toBe(0);
    }
  });

  test.each(HOSTILE.map((v) => [JSON.stringify(v), v]))(
    'the CLI given every field = %s lists each problem, exits 1 and touches no host',
    async (_shown, value) => {
      for (const kind of ['backend', 'balancer']) {
        const spec = kind === 'backend' ? backend() : balancer();
        const fields = STRICT_FIELDS.filter(([k]) => k === kind);
        for (const [, , , set] of fields) set(spec, value);

        const r = await runCli(['apply', '--spec', writeSpec(lab, spec)]);

        expect(r.code).toBe(1);
        expectNoStackTrace(r.stdout + r.stderr);
        expect(r.stderr).toBe('');
        expect(r.stdout).toMatch(/^failed: \(spec\) tula-dsr found \d+ problems in the configuration:\n/);
        for (const [, field] of fields) expect(r.stdout).toContain(`: ${field}: ${JSON.stringify(value)} `);
        expect(r.stdout).toMatch(/^\(spec\) +: ok=0 changed=0 failed=1 skipped=0 +\(\d+ ms, 0 round trips\)$/m);
      }
      expect(existsSync(SENTINEL)).toBe(false);
      for (const host of [lb, be1]) {
        expect((await host.exec(['test', '-e', SENTINEL])).code).not.toBe(0);
        expect((await host.exec(['test', '-e', '/var/lib/tula-dsr'])).code).not.toBe(0);
      }
    },
  );

  test('GIVEN a balancer path that smuggles nft commands after a line break WHEN apply runs THEN it is refused and no table appears', async () => {
    const spec = balancer();
    spec.path = 'lab/lb)\nadd table ip pwned\n# (';
    const r = await runCli(['apply', '--spec', writeSpec(lab, spec)]);
    expect(r.code).toBe(1);
    expect(await sh(lb, 'nft list tables')).toBe('');
  });
});

describe('the one quoting function: weird but valid values round-trip byte for byte', () => {
  /** Every shell and printf metacharacter on one line: valid in a construct path, which goes into files and rulesets. */
  const WEIRD = `lab/it's "q" $(touch ${SENTINEL}) \`touch ${SENTINEL}\` ; rm -rf / \\ %s %n $HOME & | > <`;

  test('GIVEN a backend whose construct paths hold every metacharacter WHEN apply runs THEN the files carry them literally and nothing executed', async () => {
    const spec = backendSpec(lab, be2, [{ ip: '10.99.9.20', path: `${WEIRD}/svc` }], { path: WEIRD });
    const text = JSON.stringify(spec);
    const result = await run(text, 'apply');
    expect(result.error).toBeUndefined();

    const plan = planBackendHost(parseHostSpec(text) as BackendHostSpec);
    for (const file of plan.files) expect(await sh(be2, `cat ${shellQuote(file.path)}`)).toBe(file.content);
    expect(await sh(be2, `head -1 ${BACKEND_SYSCTL_FILE}`)).toBe(`# Managed by tula-dsr for DSR backend host be2 (${WEIRD}). Changes here are overwritten.\n`);
    // the whole spec text is stored in the state file through the same quoting, unchanged
    expect(JSON.parse(await sh(be2, 'cat /var/lib/tula-dsr/backend.json')).spec).toBe(text);
    expect((await be2.exec(['test', '-e', SENTINEL])).code).not.toBe(0);
    expect((await run(text, 'apply')).counts.changed).toBe(0);
  });

  test('GIVEN a balancer with such paths and names with - and _ WHEN apply runs THEN nft loads it, the ruleset file carries the path, and nothing executed', async () => {
    const spec = balancerSpec(lab, lb, [{ name: 'web-1_b', ip: '10.99.9.30', backends: [{ name: 'be-2_c', ip: be2.ip }] }], { path: WEIRD });
    const result = await run(spec, 'apply');
    expect(result.error).toBeUndefined();
    expect(await sh(lb, `head -1 ${BALANCER_RULESET_FILE}`)).toBe(`# Managed by tula-dsr: DSR balancer lb (${WEIRD}) on eth0. Do not edit.\n`);
    expect(await sh(lb, 'nft list tables')).toBe('table netdev tula_dsr\n');
    expect(await sh(lb, 'nft list set netdev tula_dsr vip_stats_port')).toContain('10.99.9.30 . tcp . 80 counter packets 0 bytes 0');
    expect((await lb.exec(['test', '-e', SENTINEL])).code).not.toBe(0);
    expect(existsSync(SENTINEL)).toBe(false);
  });
});
