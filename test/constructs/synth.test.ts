/**
 * Synth: one Terraform resource per Balancer and per BackendHost, with readable triggers, provisioners, lifecycle
 * and dependencies; portable and deterministic output; both engines.
 */
import 'cdktf/lib/testing/adapters/jest';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, TerraformStack, Testing } from 'cdktf';
import { BackendHost, ENGINE_CONTEXT_KEY, Engine } from '../../constructs';
import { HOST_KEY } from '../support/common';
import { renderBackendHostReview, renderBalancerReview, sha256Hex, stableJson } from '../../model';
import { joinBalancerReview, poolSectionKeyOf } from '../support/review';
import { ENGINE_LIST, MixedStack, exampleStack, mixedStack, scratchDir } from '../support/stacks';

Testing.setupJest();
const root = scratchDir();

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const synthJson = (m: { stack: Parameters<typeof Testing.synth>[0] }): Json => JSON.parse(Testing.synth(m.stack, true));
const typeOf = (engine: Engine) => (engine === 'null_resource' ? 'null_resource' : 'terraform_data');
const triggersKey = (engine: Engine) => (engine === 'null_resource' ? 'triggers' : 'triggers_replace');

/** The resource of a host construct (`<id>/host`) in the synthesized JSON. */

/**
 * The project folder and verb of a provisioner command: perl's loader, then node's where perl hands over (exit 86) or
 * is missing (126, 127); both given the same two arguments.
 */
function provisionerCommand(command: string): { project: string; verb: string } | undefined {
  const m = /^perl -e '[^']*' (\S+) (apply|remove); s=\$\?; case \$s in 86\|126\|127\) exec node -e '[^']*' (\S+) (apply|remove);; esac; exit \$s$/.exec(
    command,
  );
  if (!m || m[1] !== m[3] || m[2] !== m[4]) return undefined;
  return { project: m[1], verb: m[2] };
}

function resourceOf(json: Json, engine: Engine, hostId: string): Json {
  const all = json.resource[typeOf(engine)] as Record<string, Json>;
  const key = Object.keys(all).find((k) => k.startsWith(`${hostId}_host_`));
  if (!key) throw new Error(`no ${typeOf(engine)} for ${hostId}; have ${Object.keys(all).join(', ')}`);
  return all[key];
}
const addressOf = (json: Json, engine: Engine, hostId: string) =>
  `${typeOf(engine)}.${Object.keys(json.resource[typeOf(engine)]).find((k) => k.startsWith(`${hostId}_host_`))}`;

const BALANCER_TRIGGERS = ['addresses', 'hash', 'ruleset', 'spec', 'tunnels'];
const HOST_TRIGGERS = ['addresses', 'boot_unit', 'hash', 'mss_clamp', 'spec', 'sysctl_file'];

describe.each(ENGINE_LIST)('engine %s', (engine) => {
  let m: MixedStack;
  let json: Json;
  beforeAll(() => {
    m = mixedStack(root(), engine);
    json = synthJson(m);
  });

  test('GIVEN two balancers and four backend hosts WHEN synthesized THEN there is exactly one resource per Balancer and per BackendHost, and nothing else', () => {
    expect(Object.keys(json.resource)).toEqual([typeOf(engine)]);
    expect(
      Object.keys(json.resource[typeOf(engine)])
        .map((k) => k.replace(/_host_[0-9A-F]{8}$/, ''))
        .sort(),
    ).toEqual(['idle', 'lb1', 'lb2', 'web1', 'web2', 'web3']);
    expect(json.data).toBeUndefined();
  });

  test('GIVEN the engine WHEN synthesized THEN the provider setup matches it', () => {
    if (engine === 'null_resource') {
      expect(json.provider).toEqual({ null: [{}] });
      expect(json.terraform.required_providers).toEqual({ null: { source: 'null', version: '3.2.4' } });
    } else {
      expect(json.provider).toBeUndefined();
      expect(json.terraform?.required_providers).toBeUndefined();
    }
  });

  test('GIVEN a balancer WHEN synthesized THEN its triggers hold the readable ruleset, addresses and tunnels, the spec JSON and its hash', () => {
    const lb1 = m.lb1.toSpec();
    const review = renderBalancerReview(lb1);
    const triggers = resourceOf(json, engine, 'lb1')[triggersKey(engine)];
    // one section per VIP, and one per slot pool (named after its id; here each VIP has a pool of its own)
    const vipKeys = lb1.vips.flatMap((v) => [`vip:${v.name}`, poolSectionKeyOf(review, v.name)]);
    expect(new Set(vipKeys).size).toBe(lb1.vips.length * 2);
    expect(Object.keys(triggers).sort()).toEqual([...BALANCER_TRIGGERS, ...vipKeys].sort());
    expect(triggers).toEqual({ ...review, spec: stableJson(lb1), hash: sha256Hex(stableJson(lb1)) });
    // Readable, multi-line text: the plan shows a line diff of it.
    expect(triggers.ruleset.split('\n').length).toBeGreaterThan(50);
    expect(triggers.ruleset).toContain('table netdev tula_dsr {\n');
    expect(triggers.ruleset).toContain('\t\ttype filter hook ingress device "eth0" priority -300; policy accept;\n');
    // Per-VIP map elements live in their own entries, so a plan hides the VIPs that did not change.
    expect(triggers.ruleset).not.toContain('10.0.1.100 . tcp . 80 . 0 :');
    expect(joinBalancerReview(triggers)).toMatch(/\n\t[0-9a-f]+:[0-9a-f]+ \. 0 : \$mac_0a00010b,\n/);
    expect(triggers.addresses).toBe('10.0.1.100/32 dev eth0\n10.0.1.110/32 dev eth0\n');
    expect(triggers.tunnels).toBe('tula0a00010b: ipip local 10.0.1.2 remote 10.0.1.11\ntula0a00020d: ipip local 10.0.1.2 remote 10.0.2.13\n');
    expect(triggers.spec).toContain('\n  "interface": "eth0",\n');
  });

  test('GIVEN a balancer WHEN synthesized THEN its spec trigger carries what destroy needs to connect, and no secret', () => {
    const spec = JSON.parse(resourceOf(json, engine, 'lb2')[triggersKey(engine)].spec);
    expect(spec.ssh).toEqual({ host: '10.0.1.3', port: 2222, user: 'deploy', privateKeyPath: 'keys/lb2', hostKey: expect.stringMatching(/^SHA256:/) });
    const web3 = JSON.parse(resourceOf(json, engine, 'web3')[triggersKey(engine)].spec);
    expect(web3.ssh).toEqual({ host: 'web3.example.net', port: 22, user: 'root', knownHostsFile: 'known_hosts' });
    expect(JSON.stringify(json)).not.toMatch(/PRIVATE KEY|passphrase|password/i);
  });

  test('GIVEN a backend host WHEN synthesized THEN its triggers hold the sysctl file, addresses and tunnel, MSS clamp, boot unit, spec and hash', () => {
    const web1 = m.hosts.web1.toSpec();
    const triggers = resourceOf(json, engine, 'web1')[triggersKey(engine)];
    expect(Object.keys(triggers).sort()).toEqual(HOST_TRIGGERS);
    expect(triggers).toEqual({ ...renderBackendHostReview(web1), spec: stableJson(web1), hash: sha256Hex(stableJson(web1)) });
    expect(triggers.sysctl_file).toContain('\nnet.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\nnet.ipv4.conf.all.rp_filter = 2\n');
    expect(triggers.addresses).toBe(
      'ipip0: ipip local 10.0.1.11 remote any\n10.0.1.100/32 dev lo\n10.0.1.110/32 dev lo\n10.0.1.120/32 dev lo\n10.0.1.110/32 dev ipip0\n',
    );
    expect(triggers.mss_clamp).toContain(
      'ip saddr { 10.0.1.110 } tcp flags & (syn|ack) == syn|ack tcp option maxseg size > 1400 tcp option maxseg size set 1400',
    );
    expect(triggers.boot_unit).toContain('ExecStart=/bin/sh /etc/tula-dsr/backend-up.sh\n');
    expect(triggers.boot_unit).toContain('\nip link set ipip0 up\n');
  });

  test('GIVEN a BackendHost named by backends of several VIPs, modes and balancers WHEN synthesized THEN it serves all of them', () => {
    expect(m.hosts.web1.toSpec().services).toEqual([
      { path: 'mixed/web', ip: '10.0.1.100', port: 80, protocol: 'tcp', mode: 'l2' },
      { path: 'mixed/far', ip: '10.0.1.110', port: 443, protocol: 'tcp', mode: 'l3', mssClamp: 1400 },
      { path: 'mixed/dns', ip: '10.0.1.120', port: 53, protocol: 'udp', mode: 'l2' },
    ]);
    expect(m.hosts.web3.toSpec().services.map((s) => `${s.ip} ${s.mode}`)).toEqual(['10.0.1.110 l3']);
    const web2 = resourceOf(json, engine, 'web2')[triggersKey(engine)];
    expect(web2.mss_clamp).toBe('(none: no L3 VIPs)\n');
    expect(web2.sysctl_file).not.toContain('rp_filter');
    const idle = resourceOf(json, engine, 'idle')[triggersKey(engine)];
    expect(JSON.parse(idle.spec).services).toEqual([]);
    expect(idle.boot_unit).toBe('(persist = false: nothing survives a reboot)\n');
  });

  test('GIVEN any host resource WHEN synthesized THEN create runs `tula-dsr apply`, destroy runs `tula-dsr remove`, both fed from self only', () => {
    const selfSpec = `self.${triggersKey(engine)}.spec`;
    const environment = `\${{ for i in range(ceil(length(base64gzip(${selfSpec})) / 65536)) : "TULA_DSR_SPEC_GZ_\${i}" => substr(base64gzip(${selfSpec}), i * 65536, 65536) }}`;
    // newApp's project folder holds the outdir; cdktf writes the stack to <outdir>/stacks/mixed
    const project = '../../..';
    for (const id of ['lb1', 'lb2', 'web1', 'web2', 'web3', 'idle']) {
      const [apply, remove] = resourceOf(json, engine, id).provisioner;
      expect(apply).toEqual({ 'local-exec': { command: expect.any(String), environment } });
      expect(remove).toEqual({ 'local-exec': { when: 'destroy', command: expect.any(String), environment } });
      expect(provisionerCommand(apply['local-exec'].command)).toEqual({ project, verb: 'apply' });
      expect(provisionerCommand(remove['local-exec'].command)).toEqual({ project, verb: 'remove' });
      for (const { 'local-exec': exec } of [apply, remove]) {
        // Terraform reads the command as a template: the loader must not hold template syntax
        expect(exec.command).not.toMatch(/\$\{|%\{/);
      }
    }
  });

  test('GIVEN no project root in the context WHEN synthesized THEN the provisioners run the tula-dsr of the folder the app runs in', () => {
    const app = new App({ outdir: path.join(root(), `cwd-${engine}`), context: { [ENGINE_CONTEXT_KEY]: engine } });
    const stack = new TerraformStack(app, 'plain');
    new BackendHost(stack, 'web1', { ssh: { host: '10.0.1.11', hostKey: HOST_KEY } });
    const [apply] = resourceOf(JSON.parse(Testing.synth(stack, true)), engine, 'web1').provisioner;
    expect(provisionerCommand(apply['local-exec'].command)).toEqual({
      project: path.relative(path.join(app.outdir, 'stacks', 'plain'), process.cwd()),
      verb: 'apply',
    });
  });

  test('GIVEN any host resource WHEN synthesized THEN it is created before the old one is destroyed', () => {
    expect(Testing.synth(m.stack, true)).toHaveResourceWithProperties({ tfResourceType: typeOf(engine) } as never, {
      lifecycle: { create_before_destroy: true },
    });
    for (const id of ['lb1', 'lb2', 'web1', 'web2', 'web3', 'idle']) expect(resourceOf(json, engine, id).lifecycle).toEqual({ create_before_destroy: true });
  });

  test('GIVEN balancers sending traffic to backend hosts WHEN synthesized THEN each balancer depends on exactly its hosts, and hosts depend on nothing', () => {
    expect(resourceOf(json, engine, 'lb1').depends_on).toEqual(['web1', 'web2', 'web3'].map((h) => addressOf(json, engine, h)));
    expect(resourceOf(json, engine, 'lb2').depends_on).toEqual(['web1', 'web2'].map((h) => addressOf(json, engine, h)));
    for (const id of ['web1', 'web2', 'web3', 'idle']) expect(resourceOf(json, engine, id).depends_on ?? []).toEqual([]);
  });

  test('GIVEN a weight change WHEN synthesized again THEN only the balancer of that VIP changes, and its ruleset diff is about that VIP', () => {
    const changed = synthJson(mixedStack(root(), engine, { webWeights: [3, 1] }));
    const t = (j: Json, id: string) => resourceOf(j, engine, id)[triggersKey(engine)];
    for (const id of ['lb2', 'web1', 'web2', 'web3', 'idle']) expect([id, t(changed, id)]).toEqual([id, t(json, id)]);
    const before = t(json, 'lb1');
    const after = t(changed, 'lb1');
    expect(after.hash).not.toBe(before.hash);
    expect(after.addresses).toBe(before.addresses);
    expect(after.tunnels).toBe(before.tunnels);
    // Only the web VIP's slot pool (which keeps its id) and the table (its scheduler chain's modulus) change; the
    // VIP entries, which point at their pools, are all equal.
    const changedKeys = Object.keys(after)
      .filter((k) => after[k] !== before[k])
      .sort();
    const webPool = poolSectionKeyOf(after, 'web');
    expect(webPool).toBe(poolSectionKeyOf(before, 'web'));
    expect(changedKeys).toEqual(['hash', webPool, 'ruleset', 'spec'].sort());
    const lines = (s: string) => new Set(s.split('\n'));
    const diff = (key: string) => ({
      removed: [...lines(before[key])].filter((l) => !lines(after[key]).has(l)),
      added: [...lines(after[key])].filter((l) => !lines(before[key]).has(l)),
    });
    // Weights 2:1 → 3:1: the web VIP gets a 4th slot and a scheduler of modulus 4; nothing about other VIPs changes.
    expect(diff(webPool).added.some((l) => /^\t[0-9a-f]+:[0-9a-f]+ \. 3 : \$mac_0a00010b,?$/.test(l))).toBe(true);
    const table = diff('ruleset');
    expect([...table.removed, ...table.added].length).toBeGreaterThan(0);
    expect([...table.removed, ...table.added].every((l) => /_rr[34]_t300|mod [34] /.test(l))).toBe(true);
    expect(
      JSON.parse(after.spec)
        .vips.find((v: Json) => v.name === 'web')
        .backends.map((b: Json) => b.weight),
    ).toEqual([3, 1, 0]);
  });

  test('GIVEN the same input WHEN synthesized twice in separate apps THEN the JSON is byte-identical', () => {
    expect(Testing.synth(mixedStack(root(), engine).stack, true)).toBe(Testing.synth(m.stack, true));
    expect(Testing.synth(exampleStack(root(), engine).stack, true)).toBe(Testing.synth(exampleStack(root(), engine).stack, true));
  });
});

describe('the engine context', () => {
  test('GIVEN no engine in the context WHEN synthesized THEN null_resource is the default', () => {
    const json = synthJson(mixedStack(root()));
    expect(Object.keys(json.resource)).toEqual(['null_resource']);
    expect(resourceOf(json, 'null_resource', 'lb1').triggers.ruleset).toContain('table netdev tula_dsr {');
  });

  test('GIVEN the two engines WHEN synthesized THEN the triggers carry the same text', () => {
    const a = synthJson(mixedStack(root(), 'null_resource'));
    const b = synthJson(mixedStack(root(), 'terraform_data'));
    for (const id of ['lb1', 'lb2', 'web1', 'web2', 'web3', 'idle'])
      expect(resourceOf(b, 'terraform_data', id).triggers_replace).toEqual(resourceOf(a, 'null_resource', id).triggers);
  });
});

describe('portable output', () => {
  const machinePaths = () => [
    ...new Set(['/work', '/root', '/tmp', '/home', process.cwd(), os.tmpdir(), os.homedir(), root(), path.resolve(__dirname, '..', '..')]),
  ];
  const absolutePathsIn = (text: string) => machinePaths().filter((p) => text.includes(p));

  test.each(ENGINE_LIST)(
    'GIVEN the %s engine WHEN the stack is synthesized to disk THEN no resource, provider or provisioner holds an absolute path of this machine',
    (engine) => {
      const m = mixedStack(root(), engine);
      // Testing.synth first: app.synth() adds cdktf's default LocalBackend (an absolute path, see the next test).
      expect(absolutePathsIn(Testing.synth(m.stack, true))).toEqual([]);
      m.app.synth();
      const file = readFileSync(path.join(m.app.outdir, 'stacks', 'mixed', 'cdk.tf.json'), 'utf8');
      const { resource, provider } = JSON.parse(file);
      expect(Object.keys(resource)).toEqual([engine]);
      expect(absolutePathsIn(JSON.stringify({ resource, provider }))).toEqual([]);
    },
  );

  test.each(ENGINE_LIST)('GIVEN the example app (%s) WHEN synthesized to disk THEN the whole cdk.tf.json holds no absolute path of this machine', (engine) => {
    // Fails while the example stack keeps cdktf's default LocalBackend, whose `path` is `${process.cwd()}/terraform.dsr.tfstate`.
    const { app } = exampleStack(root(), engine);
    app.synth();
    const file = readFileSync(path.join(app.outdir, 'stacks', 'dsr', 'cdk.tf.json'), 'utf8');
    expect(absolutePathsIn(file)).toEqual([]);
  });

  test('GIVEN the same input WHEN synthesized to disk twice THEN cdk.tf.json is byte-identical', () => {
    const one = exampleStack(root(), 'null_resource').app;
    const two = exampleStack(root(), 'null_resource').app;
    one.synth();
    two.synth();
    const read = (outdir: string) => readFileSync(path.join(outdir, 'stacks', 'dsr', 'cdk.tf.json'), 'utf8');
    expect(read(two.outdir)).toBe(read(one.outdir));
  });
});
