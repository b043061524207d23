/**
 * `tula-dsr review` on real plans: each scenario applies a first version of a stack with the REAL terraform (the
 * provisioner commands replaced by a logger), plans a second version with `-out`, and runs the real CLI on
 * `terraform show -json` of that plan, as a CI step does. The Markdown is snapshotted and its key lines asserted.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, TerraformResource, TerraformStack } from 'cdktf';
import { BackendHost, Balancer, DsrVip, Engine } from '../../constructs';
import { ExampleOptions, ExampleStack } from '../../lab/example-stack';
import { execFile } from '../../lab/exec';
import { DEFAULT_INVENTORY } from '../../lab/inventory';
import { assertFreshBuild, repoRoot } from '../../lab/l2/deploy';
import { GITHUB_COMMENT_LIMIT } from '../../model/plan-review';
import { VIP_GROUP_PREFIX, VIP_SECTIONS_KEYED_MAX, vipSectionKey } from '../../model';
import { HOST_KEY } from '../support/common';
import { neutralise, synth, terraformEnv, tf } from '../support/terraform';

jest.setTimeout(180_000);

const CLI = path.join(repoRoot(), 'dist', 'agent', 'cli.js');
type Build = (app: App) => TerraformStack;

interface Reviewed {
  readonly code: number;
  readonly markdown: string;
  readonly text: string;
  readonly stderr: string;
  /** `terraform show` of the same plan, as a person reads it. */
  readonly plan: string;
}

let root: string;
beforeAll(() => {
  assertFreshBuild();
  root = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-review-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

let scenarios = 0;
/** Applies `before` (if any), plans `after` into a saved plan, and reviews `terraform show -json` of it with the CLI. */
async function review(engine: Engine, before: Build | undefined, after: Build): Promise<Reviewed> {
  const dir = path.join(root, `s${++scenarios}`);
  mkdirSync(dir);
  const env = await terraformEnv(dir, engine);
  const outdir = path.join(dir, 'out');
  if (before) {
    const stackDir = synth(outdir, engine, before);
    neutralise(stackDir);
    await tf(stackDir, env, ['init', '-input=false']);
    await tf(stackDir, env, ['apply', '-input=false', '-auto-approve']);
  }
  const stackDir = synth(outdir, engine, after);
  neutralise(stackDir);
  if (!before) await tf(stackDir, env, ['init', '-input=false']);
  // Terraform's plan time grows with the square of a map's keys (one per VIP): about 25 s for 1,000 VIPs here.
  await tf(stackDir, env, ['plan', '-input=false', '-detailed-exitcode', '-out=review.tfplan'], [0, 2], 100_000);
  const planJson = path.join(dir, 'plan.json');
  writeFileSync(planJson, (await tf(stackDir, env, ['show', '-json', 'review.tfplan'])).stdout);
  const plan = (await tf(stackDir, env, ['show', 'review.tfplan'])).stdout;
  const markdown = await execFile(['node', CLI, 'review', planJson], { timeoutMs: 60_000 });
  const text = await execFile(['node', CLI, 'review', '--format', 'text', planJson], { timeoutMs: 60_000 });
  expect(text.code).toBe(markdown.code);
  return { code: markdown.code, markdown: markdown.stdout, text: text.stdout, stderr: markdown.stderr + text.stderr, plan };
}

const example =
  (options: ExampleOptions = {}): Build =>
  (app) =>
    new ExampleStack(app, 'dsr', DEFAULT_INVENTORY, options);

const ssh = (host: string) => ({ host, hostKey: HOST_KEY });

/** A small stack for the VIP, retire and token scenarios: lb1 with VIP web on web1 (and web2). */
function small(variant: (s: TerraformStack, parts: { lb: Balancer; web: DsrVip; web1: BackendHost }) => void): Build {
  return (app) => {
    const s = new TerraformStack(app, 'shop');
    const lb = new Balancer(s, 'lb1', { ssh: ssh('10.0.1.2'), interface: 'eth0', subnet: '10.0.1.0/24' });
    const web1 = new BackendHost(s, 'web1', { ssh: ssh('10.0.1.11') });
    const web = new DsrVip(s, 'web', { balancer: lb, ip: '10.0.1.100', port: 80 });
    web.addBackend('web1', { host: web1 });
    variant(s, { lb, web, web1 });
    return s;
  };
}

/** Each expected line stands, whole, somewhere in the review. */
const expectLines = (markdown: string, expected: readonly unknown[]) => expect(markdown.split('\n')).toEqual(expect.arrayContaining([...expected]));

test('GIVEN an applied example stack WHEN the weight of web3 goes from 3 to 4 THEN the review names that one change and exits 2, on both engines', async () => {
  const [r, onNull] = [
    await review('terraform_data', example(), example({ weights: [1, 2, 4] })),
    await review('null_resource', example(), example({ weights: [1, 2, 4] })),
  ];
  expect(r.code).toBe(2);
  expect(r.stderr).toBe('');
  expectLines(r.markdown, [
    '**1 host replaced, 3 hosts unchanged.** Terraform: 1 to add, 0 to change, 1 to destroy.',
    '| `lb1` | balancer | replace | VIP `web`: backend `web3`: weight 3 → 4 |',
    '  - backend `web3`: weight 3 → 4',
    expect.stringMatching(/^<details><summary>Exact diff of lb1: ruleset, pool:[0-9a-f]{8} \(\+12 −11 lines\)<\/summary>$/),
  ]);
  // the web VIP's pool keeps its id: its dispatch moves to the 7-slot scheduler chain
  expect(r.markdown).toMatch(/^\+\t[0-9a-f]+:[0-9a-f]+ : goto l2_tcp_port_rr7_t300$/m);
  expect(r.markdown).not.toContain('[!WARNING]');
  // The review does not depend on the engine: the same comment for null_resource and terraform_data.
  expect(onNull).toEqual(expect.objectContaining({ code: r.code, markdown: r.markdown, text: r.text }));
  expect(r.markdown).toMatchSnapshot();
  expect(r.text).toMatchSnapshot();
});

describe('engine terraform_data', () => {
  const engine: Engine = 'terraform_data';

  test('GIVEN web1 and web2 WHEN web3 is added to every VIP THEN the balancer lists the new backends and web3 is created', async () => {
    const before = example({ backends: ['web1', 'web2'], weights: { web1: 1, web2: 2 } });
    const r = await review(engine, before, example({ weights: { web1: 1, web2: 2, web3: 3 } }));
    expect(r.code).toBe(2);
    expectLines(r.markdown, [
      '**1 host replaced, 1 host created, 2 hosts unchanged.** Terraform: 2 to add, 0 to change, 1 to destroy.',
      '| `web3` | backend host | create | new backend host for 3 VIPs |',
      '  - backend `web3` added (10.213.1.13, weight 3)',
      '  - backend `web3` added (10.213.1.13, weight 1)',
      '- VIP 10.213.1.100 added to `lo`',
      '- sysctl `net.ipv4.conf.all.arp_ignore` set to 1',
    ]);
    expect(r.markdown).toMatchSnapshot();
  });

  test('GIVEN weights 1:2:3 WHEN web3 is drained to weight 0 THEN the review warns that it takes no new flows', async () => {
    const r = await review(engine, example(), example({ weights: { web1: 1, web2: 2, web3: 0 } }));
    expect(r.code).toBe(2);
    expectLines(r.markdown, [
      '> [!WARNING]',
      '> - backend `web3` (10.213.1.13) of VIP `web` is drained (weight 3 → 0): no new flows, established flows stay',
      '  - backend `web3`: weight 3 → 0 (drained: no new flows)',
    ]);
    expect(r.markdown).toMatchSnapshot();
  });

  test('GIVEN VIPs web and dns WHEN dns is removed, api (L3) added and web changes algorithm and timeout THEN each change and its warning are listed', async () => {
    const before = small((s, { lb, web1 }) =>
      new DsrVip(s, 'dns', { balancer: lb, ip: '10.0.1.101', port: 53, protocol: 'udp' }).addBackend('web1', { host: web1 }),
    );
    const after: Build = (app) => {
      const s = new TerraformStack(app, 'shop');
      const lb = new Balancer(s, 'lb1', { ssh: ssh('10.0.1.2'), interface: 'eth0', subnet: '10.0.1.0/24' });
      const web1 = new BackendHost(s, 'web1', { ssh: ssh('10.0.1.11') });
      new DsrVip(s, 'web', { balancer: lb, ip: '10.0.1.100', port: 80, algorithm: 'source-hash', flowTimeoutSec: 120 }).addBackend('web1', { host: web1 });
      new DsrVip(s, 'api', { balancer: lb, ip: '10.0.1.102', port: 443, mode: 'l3', mssClamp: 1400 }).addBackend('web1', { host: web1 });
      return s;
    };
    const r = await review(engine, before, after);
    expect(r.code).toBe(2);
    expectLines(r.markdown, [
      '> - VIP `dns` (10.0.1.101 udp/53) stops serving: it is removed from balancer `lb1`',
      '> - VIP `web`: algorithm weighted-round-robin → source-hash reschedules flows: new flows, and flows whose entry expired, are placed by the new algorithm (established flows keep their backend)',
      '- VIP `api` added (10.0.1.102 tcp/443, l3, weighted-round-robin, flow timeout 300s, mssClamp 1400) with 1 backend: `web1`',
      '| `lb1` | balancer | replace | VIP `api` added; VIP `dns` removed; VIP `web`: 2 changes |',
      '- VIP `dns` removed (10.0.1.101 udp/53)',
      '  - algorithm weighted-round-robin → source-hash',
      '  - flowTimeoutSec 300 → 120',
      '- VIP 10.0.1.102 added to `lo` and `ipip0`',
      '- VIP 10.0.1.101 removed from `lo`',
      '- tunnel `ipip0` created',
      '- sysctl `net.ipv4.conf.all.rp_filter` set to 2',
    ]);
    expect(r.markdown).toMatchSnapshot();
  });

  test('GIVEN backend hosts web1 and web2 WHEN web2 is retired THEN the review warns that its host is destroyed and its backend removed', async () => {
    const withWeb2 = small((s, { web }) => web.addBackend('web2', { host: new BackendHost(s, 'web2', { ssh: ssh('10.0.1.12') }) }));
    const r = await review(
      engine,
      withWeb2,
      small((s) => BackendHost.retire(s, 'web2')),
    );
    expect(r.code).toBe(2);
    expectLines(r.markdown, [
      '**1 host destroyed, 1 host replaced, 1 host unchanged.** Terraform: 1 to add, 0 to change, 2 to destroy.',
      '> - backend `web2` (10.0.1.12) is removed from VIP `web`: it gets no new flows',
      '> - backend host `web2` is destroyed: `tula-dsr remove` takes VIPs 10.0.1.100 off `lo` and restores its sysctls',
      '| `web2` | backend host | destroy | retired: `tula-dsr remove` undoes its configuration on the host |',
    ]);
    expect(r.markdown).toMatchSnapshot();
  });

  test('GIVEN an applied stack WHEN a backend takes its IP from another resource THEN the review says the spec is known only after apply and names the reference', async () => {
    const withToken = small((s, { web }) => {
      const source = new TerraformResource(s, 'backend_ip', { terraformResourceType: 'terraform_data' });
      source.addOverride('input', '10.0.1.77');
      web.addBackend('vm', { ip: source.getStringAttribute('output') });
    });
    const r = await review(
      engine,
      small(() => undefined),
      withToken,
    );
    expect(r.code).toBe(2);
    expectLines(r.markdown, [
      '> - `lb1`: its spec holds values known only after apply (it uses `terraform_data.backend_ip.output`): this review cannot show its VIP and backend changes; the agent checks them at apply time',
      '| `lb1` | balancer | replace | its spec is known only after apply |',
      'Other resources in this plan: `terraform_data.backend_ip` (create)',
      '+(rendered by the agent at apply time: the spec holds values Terraform knows only after apply)',
    ]);
    expect(r.markdown).toMatchSnapshot();
  });

  test('GIVEN a new balancer with 1,000 VIPs WHEN reviewed THEN the comment stays within GitHub’s limit and says what it cut', async () => {
    const big: Build = (app) => {
      const s = new TerraformStack(app, 'big');
      const lb = new Balancer(s, 'lb1', { ssh: ssh('10.0.1.2'), interface: 'eth0' });
      for (let i = 0; i < 1000; i++) {
        const vip = new DsrVip(s, `v${i}`, { balancer: lb, ip: `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`, port: 80 });
        vip.addBackend('b', { ip: `10.2.0.${(i % 200) + 1}`, mac: '02:00:0a:02:00:01' });
      }
      return s;
    };
    const r = await review(engine, undefined, big);
    expect(r.code).toBe(2);
    expect(r.markdown.length).toBeLessThanOrEqual(GITHUB_COMMENT_LIMIT);
    expect(r.markdown.length).toBeGreaterThan(GITHUB_COMMENT_LIMIT - 5_000);
    expectLines(r.markdown, ['| `lb1` | balancer | create | new balancer with 1,000 VIPs |', '> [!NOTE]']);
    const note = r.markdown.split('\n').find((l) => l.startsWith('> - This review was shortened'));
    expect(note).toMatch(/^> - This review was shortened to fit GitHub's limit of 65,536 characters per comment; .* Cut: /);
    expect(note).toMatch(/the exact diff of lb1: left out \([\d,]+ lines\)/);
    expect(note).toMatch(/the changes of lb1: \d+ of 1,000 items shown/);
    expect(r.markdown).toMatch(/^- \*\d+ more items not shown here \(size limit\)\.\*$/m);
    // Every fence and <details> that opens also closes.
    expect(r.markdown.match(/<details>/g)?.length).toBe(r.markdown.match(/<\/details>/g)?.length);
    expect((r.markdown.match(/^```/gm)?.length ?? 0) % 2).toBe(0);
    // A terminal has no limit: the text format holds every VIP and the whole diff.
    expect(r.text).not.toContain('not shown here');
    expect(r.text).toContain('  - VIP v999 (10.1.3.250 tcp/80, l2, weighted-round-robin, flow timeout 300s) with 1 backend: b');
    expect(r.markdown).toMatchSnapshot();
  });

  /** lb1 with `count` VIPs v0…, each on backends a and b; VIP `odd` gives a weight 3. */
  const big =
    (count: number, odd?: string): Build =>
    (app) => {
      const s = new TerraformStack(app, 'big');
      const lb = new Balancer(s, 'lb1', { ssh: ssh('10.0.1.2'), interface: 'eth0' });
      for (let i = 0; i < count; i++) {
        const vip = new DsrVip(s, `v${i}`, { balancer: lb, ip: `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`, port: 80 });
        vip.addBackend('a', { ip: '10.2.0.1', mac: '02:00:0a:02:00:01', weight: `v${i}` === odd ? 3 : 1 });
        vip.addBackend('b', { ip: '10.2.0.2', mac: '02:00:0a:02:00:02' });
      }
      return s;
    };

  test('GIVEN an applied balancer of 1,001 VIPs, whose VIP sections are grouped, WHEN one VIP gets weights of its own THEN the plan marks its line in its group and the review shows that VIP alone', async () => {
    const count = VIP_SECTIONS_KEYED_MAX + 1;
    const r = await review(engine, big(count), big(count, 'v500'));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('');
    // Terraform shows the group that changed; in it, the VIP's element is the one line removed and added
    const group = vipSectionKey('v500', count);
    expect(r.plan).toContain(`"${group}"`);
    const changedElements = r.plan.split('\n').filter((l) => /^\s+[-+]\s+vip_pool_port 10\.1\.\d+\.\d+ \. tcp \. 80 : /.test(l));
    expect(changedElements.map((l) => l.trim().slice(0, 1) + l.replace(/^\s+[-+]\s+/, ' ').split(' : ')[0])).toEqual([
      '- vip_pool_port 10.1.2.1 . tcp . 80',
      '+ vip_pool_port 10.1.2.1 . tcp . 80',
    ]);
    expectLines(r.markdown, [
      '**1 host replaced.** Terraform: 1 to add, 0 to change, 1 to destroy.',
      '| `lb1` | balancer | replace | VIP `v500`: backend `a`: weight 1 → 3 |',
      expect.stringMatching(/^<details><summary>Exact diff of lb1: ruleset, vip:v500, pool:[0-9a-f]{8}, pool:[0-9a-f]{8} \(\+\d+ −\d+ lines\)<\/summary>$/),
      '--- vip:v500 (before)',
      expect.stringMatching(/^-\t10\.1\.2\.1 \. tcp \. 80 : [0-9a-f]+:[0-9a-f]+$/),
      expect.stringMatching(/^\+\t10\.1\.2\.1 \. tcp \. 80 : [0-9a-f]+:[0-9a-f]+$/),
    ]);
    // no other VIP's section is in the diff
    expect(r.markdown.match(/^--- vip:/gm)).toHaveLength(1);
    expect(r.markdown).not.toContain(VIP_GROUP_PREFIX);
  });

  test('GIVEN an applied balancer of 1,000 VIPs, a key per VIP section, WHEN a VIP is added and the sections are grouped THEN the review shows the added VIP alone', async () => {
    const r = await review(engine, big(VIP_SECTIONS_KEYED_MAX), big(VIP_SECTIONS_KEYED_MAX + 1));
    expect(r.code).toBe(2);
    expect(r.plan).toContain(`"${vipSectionKey('v1000', VIP_SECTIONS_KEYED_MAX + 1)}"`);
    expectLines(r.markdown, ['| `lb1` | balancer | replace | VIP `v1000` added |', '--- vip:v1000 (before)']);
    expect(r.markdown.match(/^--- vip:/gm)).toHaveLength(1);
    // the addresses, now ADDRESS DEVICE lines in the plan, show in the review as before: one line added
    expect(r.plan).toContain('10.1.4.1 eth0');
    expect(r.markdown.split('\n').filter((l) => /^[-+]10\.1\.\d+\.\d+/.test(l))).toEqual(['+10.1.4.1/32 dev eth0']);
  });

  test('GIVEN an applied stack WHEN planned again unchanged THEN the review says so and exits 0', async () => {
    const r = await review(engine, example(), example());
    expect(r.code).toBe(0);
    expectLines(r.markdown, [
      '**No changes in 1 stack: the hosts already match the configuration.**',
      '**4 hosts unchanged.** Terraform: 0 to add, 0 to change, 0 to destroy.',
    ]);
    expect(r.markdown).toMatchSnapshot();
  });

  test('GIVEN the weight-change review WHEN the README shows a review comment THEN it is this one, verbatim', async () => {
    const r = await review(engine, example(), example({ weights: [1, 2, 4] }));
    const readme = readFileSync(path.join(repoRoot(), 'README.md'), 'utf8');
    const shown = /````markdown\n([\s\S]*?)````/.exec(readme)?.[1];
    expect(shown).toBe(r.markdown);
  });
});
