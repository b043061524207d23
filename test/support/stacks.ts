/**
 * Construct stacks shared by the synth, token, terraform and nft tests, so that every ruleset they synthesize is
 * also checked by the real nft (see render-fixtures.ts, which registers the rulesets returned here).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, TerraformStack, Testing } from 'cdktf';
import { Backend, Balancer, BackendHost, DsrVip, ENGINE_CONTEXT_KEY, Engine, PROJECT_ROOT_CONTEXT_KEY } from '../../constructs';
import { ExampleStack } from '../../lab/example-stack';
import { DEFAULT_INVENTORY } from '../../lab/inventory';
import { renderBalancerReview } from '../../model';
import { joinBalancerReview } from './review';
import { HOST_KEY, fillPendingDefines } from './common';

export const ENGINE_LIST: readonly Engine[] = ['null_resource', 'terraform_data'];

/**
 * A temp dir for cdktf Apps (the App constructor creates `<outdir>/stacks` even when a test only calls
 * Testing.synth), created before and removed after the calling test file.
 */
export function scratchDir(prefix = 'tula-dsr-test-'): () => string {
  let dir: string | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (!dir) throw new Error('scratchDir() is only usable inside tests (after beforeAll)');
    return dir;
  };
}

let appCount = 0;
/**
 * An App in its own folder under `root`, with the engine context set (undefined = the default engine). `root` is the
 * project, as a project folder holds its cdktf.out: the provisioners run the tula-dsr in `root`.
 */
export function newApp(root: string, engine?: Engine): App {
  const outdir = path.join(root, `app${++appCount}`);
  return new App({ outdir, context: { [PROJECT_ROOT_CONTEXT_KEY]: root, ...(engine ? { [ENGINE_CONTEXT_KEY]: engine } : {}) } });
}

export const ssh = (host: string) => ({ host, hostKey: HOST_KEY });

export function exampleStack(root: string, engine?: Engine, weights?: readonly number[]): { app: App; stack: ExampleStack } {
  const app = newApp(root, engine);
  return { app, stack: new ExampleStack(app, 'dsr', DEFAULT_INVENTORY, weights ? { weights } : {}) };
}

export interface MixedStack {
  readonly app: App;
  readonly stack: TerraformStack;
  readonly lb1: Balancer;
  readonly lb2: Balancer;
  readonly hosts: { readonly web1: BackendHost; readonly web2: BackendHost; readonly web3: BackendHost; readonly idle: BackendHost };
  readonly web: DsrVip;
}

/**
 * Two balancers; web1 serves an L2 VIP and an L3 VIP on lb1 and an L2 VIP on lb2 (services across VIPs and modes);
 * web3 is only reachable over L3; `idle` serves nothing; one backend is a plain IP without a host.
 */
export function mixedStack(root: string, engine?: Engine, opts: { webWeights?: [number, number] } = {}): MixedStack {
  const app = newApp(root, engine);
  const stack = new TerraformStack(app, 'mixed');
  const lb1 = new Balancer(stack, 'lb1', { ssh: ssh('10.0.1.2'), interface: 'eth0', subnet: '10.0.1.0/24' });
  const lb2 = new Balancer(stack, 'lb2', {
    ssh: { ...ssh('10.0.1.3'), user: 'deploy', port: 2222, privateKeyPath: 'keys/lb2' },
    interface: 'ens3',
    subnet: '10.0.1.0/24',
  });
  const web1 = new BackendHost(stack, 'web1', { ssh: ssh('10.0.1.11') });
  const web2 = new BackendHost(stack, 'web2', { ssh: ssh('10.0.1.12') });
  const web3 = new BackendHost(stack, 'web3', { ssh: { host: 'web3.example.net', knownHostsFile: 'known_hosts' }, address: '10.0.2.13' });
  const idle = new BackendHost(stack, 'idle', { ssh: ssh('10.0.1.19'), persist: false });
  const [w1, w2] = opts.webWeights ?? [2, 1];

  const web = new DsrVip(stack, 'web', { balancer: lb1, ip: '10.0.1.100', port: 80 });
  web.addBackend('web1', { host: web1, weight: w1 });
  web.addBackend('web2', { host: web2, weight: w2 });
  new Backend(web, 'plain', { ip: '10.0.1.14', mac: '02:00:0a:00:01:0e', weight: 0 });

  const far = new DsrVip(stack, 'far', { balancer: lb1, ip: '10.0.1.110', port: 443, mode: 'l3', algorithm: 'consistent-hash', mssClamp: 1400 });
  far.addBackend('web1', { host: web1 });
  far.addBackend('web3', { host: web3 });

  const dns = new DsrVip(stack, 'dns', { balancer: lb2, ip: '10.0.1.120', port: 53, protocol: 'udp', algorithm: 'round-robin', flowTimeoutSec: 30 });
  dns.addBackend('web1', { host: web1 });
  dns.addBackend('web2', { host: web2 });
  return { app, stack, lb1, lb2, hosts: { web1, web2, web3, idle }, web };
}

/** The plan rulesets of every balancer in the shared stacks (pending MACs filled), named for the nft check. */
export function stackRulesets(): { name: string; text: string }[] {
  const root = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-rulesets-'));
  try {
    const balancers: [string, Balancer][] = [
      ['example stack weights 1:2:3', exampleStack(root).stack.balancer],
      ['example stack weights 1:2:4', exampleStack(root, undefined, [1, 2, 4]).stack.balancer],
      ...(['lb1', 'lb2'] as const).map((k): [string, Balancer] => [`mixed stack ${k}`, mixedStack(root)[k]]),
    ];
    return balancers.map(([name, b]) => ({ name: `${name} | plan`, text: fillPendingDefines(joinBalancerReview(renderBalancerReview(b.toSpec()))) }));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** How cdktf's validation error starts. */
export const VALIDATION_HEADER = 'Validation failed with the following errors:';

/** The `[path] field: message` lines of the validation error; fails the test if synth succeeds. */
export function validationProblems(stack: TerraformStack): string[] {
  let message: string | undefined;
  try {
    Testing.synth(stack, true);
  } catch (e) {
    message = (e as Error).message;
  }
  if (message === undefined) throw new Error('expected synth to fail validation, but it succeeded');
  if (!message.startsWith(`${VALIDATION_HEADER}\n`)) throw new Error(`not cdktf's validation error: ${message}`);
  return message
    .split('\n')
    .filter((l) => l.startsWith('  ['))
    .map((l) => l.slice(2));
}
