/**
 * What a user sees for a mistake, run the four ways users run an app: `node app.js` with the README's
 * `explainAndExit`, `node app.js` without it (the error is not caught), and the real `cdktf synth` and `cdktf deploy`
 * on that app. Each way must show the problems with their construct paths and no stack frame, no "Resolution error"
 * and no "Object creation stack". The apps are plain JavaScript in a project folder of their own that requires
 * `tula-dsr` (this checkout's dist/) and `cdktf`, as a user's compiled app does.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from '../../lab/exec';
import { assertFreshBuild, repoRoot } from '../../lab/l2/deploy';

jest.setTimeout(60_000);

const ROOT = repoRoot();
const CDKTF_CLI = path.join(ROOT, 'node_modules', '.bin', 'cdktf');

/** A stack with one mistake (or several), as the body of `build(app)`; `HK` is a valid pinned host key. */
interface BadInput {
  readonly what: string;
  readonly body: string;
  /** The problems, each exactly as the user must see it. */
  readonly problems: readonly string[];
}

const BASE = `
  const s = new TerraformStack(app, 'dsr');
  const lb = new Balancer(s, 'lb1', { ssh: { host: '10.0.1.2', hostKey: HK }, interface: 'eth0', subnet: '10.0.1.0/24' });
  const web2 = new BackendHost(s, 'web2', { ssh: { host: '10.0.1.12', hostKey: HK } });
  const web = new DsrVip(s, 'web', { balancer: lb, ip: '10.0.1.100', port: 80 });`;

const BAD_INPUTS: readonly BadInput[] = [
  {
    what: 'a weight of 5000',
    body: `${BASE}\n  web.addBackend('web2', { host: web2, weight: 5000 });`,
    problems: ['[dsr/web/web2] weight: 5000 is not allowed; use an integer from 0 to 1000 (0 drains the backend)'],
  },
  {
    what: 'cross-object mistakes (a backend outside the subnet, two VIPs on one address, a backend on another port)',
    body: `${BASE}
  web.addBackend('web2', { host: web2 });
  web.addBackend('far', { ip: '10.0.2.5' });
  new DsrVip(s, 'web-again', { balancer: lb, ip: '10.0.1.100', port: 80 }).addBackend('web2', { host: web2, port: 8080 });`,
    problems: [
      `[dsr/web/far] ip: "10.0.2.5" is outside the balancer's subnet 10.0.1.0/24; an L2 backend must share the balancer's segment (use mode 'l3' for other subnets)`,
      "[dsr/web-again] port: 80 clashes with dsr/web (10.0.1.100 tcp/80) on the same balancer; each ip/protocol/port may belong to one VIP, and '*' covers every port",
      '[dsr/web-again/web2] port: 8080 differs from the VIP port 80; DSR cannot translate ports, so the backend must listen on 80 (leave port unset)',
    ],
  },
  {
    what: 'an unknown engine in the context, and an SSH target with no host key',
    body: `app.node.setContext('tula-dsr:engine', 'terraform-data');
  const s = new TerraformStack(app, 'dsr');
  const lb = new Balancer(s, 'lb1', { ssh: { host: '10.0.1.2' }, interface: 'eth0' });
  new DsrVip(s, 'web', { balancer: lb, ip: '10.0.1.100', port: 80 }).addBackend('web1', { ip: '10.0.1.11' });`,
    problems: [
      `[dsr] context tula-dsr:engine: "terraform-data" is not supported; use 'null_resource' (default) or 'terraform_data'`,
      "[dsr/lb1] ssh.hostKey: is missing: host keys are always verified, so set exactly one of ssh.hostKey ('SHA256:…' from `ssh-keygen -lf`, or an OpenSSH public key line) or ssh.knownHostsFile",
    ],
  },
  {
    what: 'a relative statistics textfile and an interval of 0',
    body: `const s = new TerraformStack(app, 'dsr');
  const lb = new Balancer(s, 'lb1', { ssh: { host: '10.0.1.2', hostKey: HK }, interface: 'eth0', statsTextfile: 'tula_dsr.prom', statsIntervalSec: 0 });
  new DsrVip(s, 'web', { balancer: lb, ip: '10.0.1.100', port: 80 }).addBackend('web1', { ip: '10.0.1.11' });`,
    problems: [
      `[dsr/lb1] statsTextfile: "tula_dsr.prom" is not a usable statistics textfile; use true (/var/lib/prometheus/node-exporter/tula_dsr.prom), false (none), or an absolute path ending in '.prom' of letters, digits, '.', '_', '-' and '/', without '.' or '..' segments, at most 1024 characters`,
      '[dsr/lb1] statsIntervalSec: 0 is not allowed; use an integer number of seconds from 1 to 3600',
    ],
  },
  {
    what: 'balancer pair mistakes (a router id of 0, the secondary above the primary, a flow copy port of 0)',
    body: `const s = new TerraformStack(app, 'dsr');
  const member = (id, host) => new Balancer(s, id, { ssh: { host, hostKey: HK }, interface: 'eth0', subnet: '10.0.1.0/24' });
  const vrrp = { virtualRouterId: 0, primaryPriority: 100, secondaryPriority: 150 };
  const edge = new BalancerPair(s, 'edge', { primary: member('lb1', '10.0.1.2'), secondary: member('lb2', '10.0.1.3'), vrrp, flowCopyPort: 0 });
  new DsrVip(s, 'web', { balancer: edge, ip: '10.0.1.100', port: 80 }).addBackend('web1', { ip: '10.0.1.11' });`,
    problems: [
      '[dsr/edge] flowCopyPort: 0 is not allowed; use an integer from 1 to 65535',
      '[dsr/edge] vrrp.virtualRouterId: 0 is not allowed; use an integer from 1 to 255 (unique among the VRRP routers of the segment)',
      "[dsr/edge] vrrp.secondaryPriority: 150 is not allowed; use a priority below the primary's (100)",
    ],
  },
  {
    what: 'a balancer pair with a bad virtual router id, a secondary on the same host, and a VIP of its own on a member',
    body: `const s = new TerraformStack(app, 'dsr');
  const lb1 = new Balancer(s, 'lb1', { ssh: { host: '10.0.1.2', hostKey: HK }, interface: 'eth0', subnet: '10.0.1.0/24' });
  const lb2 = new Balancer(s, 'lb2', { ssh: { host: '10.0.1.2', hostKey: HK }, interface: 'eth0', subnet: '10.0.1.0/24' });
  const lb3 = new Balancer(s, 'lb3', { ssh: { host: '10.0.1.4', hostKey: HK }, interface: 'eth0', subnet: '10.0.1.0/24' });
  new DsrVip(s, 'own', { balancer: lb3, ip: '10.0.1.101', port: 80 }).addBackend('web1', { ip: '10.0.1.11' });
  const edge = new BalancerPair(s, 'edge', { primary: lb1, secondary: lb2, vrrp: { virtualRouterId: 256 } });
  new BalancerPair(s, 'edge2', { primary: lb3, secondary: lb1, vrrp: { virtualRouterId: 7 } });
  new DsrVip(s, 'web', { balancer: edge, ip: '10.0.1.100', port: 80 }).addBackend('web1', { ip: '10.0.1.11' });`,
    problems: [
      '[dsr/edge] vrrp.virtualRouterId: 256 is not allowed; use an integer from 1 to 255 (unique among the VRRP routers of the segment)',
      `[dsr/edge] secondary.address: "10.0.1.2" is the primary's address too; a pair needs two hosts`,
      '[dsr/edge2] primary: dsr/lb3 already has VIPs (own); attach VIPs to the pair, so that both members serve them',
      '[dsr/edge2] secondary: dsr/lb1 is already a member of another balancer pair',
    ],
  },
  {
    what: 'a DsrVip without a balancer (JavaScript)',
    body: `const s = new TerraformStack(app, 'dsr');
  new DsrVip(s, 'web', { ip: '10.0.1.100', port: 80 });`,
    problems: ['dsr/web: balancer: is required and must be a Balancer or BalancerPair construct'],
  },
];

function appSource(body: string, explain: boolean): string {
  const build = `function build(app) {${body}\n}`;
  const run = explain
    ? 'try {\n  const app = new App();\n  build(app);\n  app.synth();\n} catch (error) {\n  explainAndExit(error);\n}'
    : 'const app = new App();\nbuild(app);\napp.synth();';
  return [
    "const { App, TerraformStack } = require('cdktf');",
    "const { Balancer, BalancerPair, BackendHost, DsrVip, explainAndExit } = require('tula-dsr');",
    "const HK = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';",
    build,
    run,
    '',
  ].join('\n');
}

/** A user's project folder: the app, cdktf.json, and node_modules resolving tula-dsr to this checkout. */
function userProject(parent: string, name: string, source: string): string {
  const dir = path.join(parent, name);
  mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
  symlinkSync(ROOT, path.join(dir, 'node_modules', 'tula-dsr'), 'dir');
  for (const dep of ['cdktf', 'constructs']) symlinkSync(path.join(ROOT, 'node_modules', dep), path.join(dir, 'node_modules', dep), 'dir');
  writeFileSync(path.join(dir, 'app.js'), source);
  const cdktfJson = { language: 'javascript', app: `${process.execPath} app.js`, projectId: 'user-errors', sendCrashReports: 'false', context: {} };
  writeFileSync(path.join(dir, 'cdktf.json'), JSON.stringify(cdktfJson, null, 2));
  return dir;
}

type Way = 'node app.js with explainAndExit' | 'node app.js without explainAndExit' | 'cdktf synth' | 'cdktf deploy';
const WAYS: readonly Way[] = ['node app.js with explainAndExit', 'node app.js without explainAndExit', 'cdktf synth', 'cdktf deploy'];

let dir: string;
let env: Record<string, string>;
beforeAll(() => {
  assertFreshBuild(ROOT);
  dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-user-errors-'));
  // The machine exports TF_CLI_CONFIG_FILE pointing at a missing file; cdktf-cli would try telemetry without the flag.
  writeFileSync(path.join(dir, 'cli.tfrc'), 'disable_checkpoint = true\n');
  env = { CHECKPOINT_DISABLE: '1', TF_CLI_CONFIG_FILE: path.join(dir, 'cli.tfrc'), CI: '1' };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let projects = 0;
async function run(way: Way, input: BadInput): Promise<{ code: number; output: string }> {
  const explain = way === 'node app.js with explainAndExit';
  const project = userProject(dir, `p${++projects}`, appSource(input.body, explain));
  const argv =
    way === 'cdktf synth'
      ? [CDKTF_CLI, 'synth']
      : way === 'cdktf deploy'
        ? [CDKTF_CLI, 'deploy', '--auto-approve', '--skip-provider-lock']
        : [process.execPath, 'app.js'];
  const r = await execFile(argv, { cwd: project, env, timeoutMs: 50_000 });
  return { code: r.code, output: r.stdout + r.stderr };
}

describe.each(WAYS)('%s', (way) => {
  test.each(BAD_INPUTS.map((i) => [i.what, i] as const))(
    'GIVEN %s WHEN run THEN the output lists the problems and holds no stack frame',
    async (_what, input) => {
      const { code, output } = await run(way, input);
      expect(code).not.toBe(0);
      for (const problem of input.problems) expect(output).toContain(problem);
      expect(output).not.toMatch(/^\s*at /m);
      expect(output).not.toContain('Object creation stack');
      expect(output).not.toContain('Resolution error');
      if (way === 'node app.js with explainAndExit') {
        // Exactly the list: a header and one line per problem, nothing else.
        const lines = output.trimEnd().split('\n');
        expect(lines[0]).toMatch(/^(Validation failed with the following errors:|tula-dsr found \d+ problems? in the configuration:)$/);
        expect(lines.slice(1).map((l) => l.replace(/^ {2}(- )?/, ''))).toEqual(input.problems);
      }
    },
  );
});
