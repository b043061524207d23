#!/usr/bin/env node
/**
 * `npm run demo [-- --keep] [-- --engine terraform_data] [-- --l3] [-- --ha]`
 *
 * Builds the L2 namespace lab (client, lb, web1..3, each with a real sshd), synthesizes the example stack against
 * it, deploys it with the real `terraform init` and `apply` (the provisioners run the tula-dsr agent over SSH),
 * sends traffic from the client and prints how it was balanced and how few bytes crossed the balancer, then
 * destroys the deployment and tears the lab down. `--keep` leaves everything running until Ctrl-C.
 * `--l3` runs the L3 (IPIP) demo in the qemu VM lab instead (lab/vm/demo.ts); `--ha` the balancer pair demo
 * (lab/ha-demo.ts), which prints the failover time.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../constructs';
import { ENGINES } from '../constructs/host-resource';
import { createL2Lab, L2Lab } from './l2/lab';
import { applySummary, createWorkspace, hostProgress, RunResult, Workspace } from './l2/deploy';
import { flushFlows, httpBurst, measureByteShare, udpBurst } from './l2/traffic';
import { RUNTIME_STATE_FILE, parseRuntimeState } from '../model';
import { runHaDemo } from './ha-demo';

const WEIGHTS = [1, 2, 3];
const REQUESTS = 600;
/** The web VIP's health check: a backend whose service stops is out within intervalSec × fall + timeoutSec. */
const HEALTH_CHECK = { kind: 'http', path: '/name', intervalSec: 1, timeoutSec: 0.5, fall: 2, rise: 2 } as const;

interface Args {
  keep: boolean;
  l3: boolean;
  ha: boolean;
  engine: Engine;
}

function parseArgs(argv: readonly string[]): Args | string {
  // terraform_data is built into Terraform: the demo then uses no stand-in at all. null_resource needs the
  // hashicorp/null provider, which this offline machine cannot download, so it runs on the test-only stand-in.
  const args: Args = { keep: false, l3: false, ha: false, engine: 'terraform_data' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--keep') args.keep = true;
    else if (a === '--l3') args.l3 = true;
    else if (a === '--ha') args.ha = true;
    else if (a === '--engine') {
      const e = argv[++i];
      if (!(ENGINES as readonly string[]).includes(e)) return `--engine ${e ?? ''}: use ${ENGINES.join(' or ')}`;
      args.engine = e as Engine;
    } else if (a === '--help' || a === '-h') return '';
    else return `unknown option ${JSON.stringify(a)}`;
  }
  return args;
}

const USAGE = `usage: npm run demo [-- --keep] [-- --engine null_resource|terraform_data] [-- --l3] [-- --ha]

  --keep     leave the lab and the deployment running; Ctrl-C tears everything down
  --engine   the Terraform resource engine (default terraform_data, built into Terraform; null_resource runs
             on the test-only offline stand-in for hashicorp/null)
  --l3       the L3 (IPIP) demo in a qemu VM (Debian's cloud kernel; the first run fetches it with apt)
  --ha       a balancer pair (keepalived): failover and failback at advert_int 0.2 s and 1 s, with the times
needs root (network namespaces, sshd, nft; for --l3: qemu and apt) and terraform on PATH.`;

const out = (line = '') => process.stdout.write(`${line}\n`);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/**
 * The VM lab (lab/vm) may provide the L3 demo as `lab/vm/demo.ts` exporting
 * `runL3Demo(options: { keep: boolean; log: (line: string) => void }): Promise<number>`.
 */
type L3Runner = (options: { keep: boolean; log: (line: string) => void }) => Promise<number>;
function findL3Runner(): L3Runner | undefined {
  const file = path.join(__dirname, 'vm', 'demo.js');
  if (!existsSync(file)) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(file) as { runL3Demo?: unknown };
  return typeof mod.runL3Demo === 'function' ? (mod.runL3Demo as L3Runner) : undefined;
}

async function step<T>(label: string, f: () => Promise<T> | T): Promise<T> {
  const t0 = Date.now();
  process.stdout.write(`${label} ...`);
  const value = await f();
  process.stdout.write(` done (${secs(Date.now() - t0)})\n`);
  return value;
}

function terraformFailed(what: string, r: RunResult): Error {
  const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-30).join('\n');
  return new Error(`terraform ${what} failed (exit ${r.code}):\n${tail}`);
}

function progressPrinter(): (line: string) => void {
  return (line) => {
    const p = hostProgress(line);
    if (p !== undefined) out(`    ${p.trimStart()}`);
  };
}

interface Cleanup {
  lab?: L2Lab;
  ws?: Workspace;
  /** Set while --keep waits: a signal ends the wait and the demo tears down as usual. */
  release?: () => void;
}

/** Waits until the runtime's state file says `backend` is (or is not) down, at most `ms`; the time it took. */
async function waitForHealth(lb: L2Lab['lb'], ip: string, down: boolean, ms: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    const state = parseRuntimeState((await lb.exec(`cat ${RUNTIME_STATE_FILE}`)).stdout);
    if (state && state.pools.some((p) => p.down.includes(ip)) === down) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the runtime did not mark ${ip} ${down ? 'down' : 'up'} within ${ms} ms`);
}

/** A backend's service stops and comes back: the runtime takes it out and brings it back; `tula-dsr stats` shows it. */
async function showFailover(l2: L2Lab, ws: Workspace): Promise<void> {
  const web2 = l2.backends[1];
  const bound = (n: number) => (HEALTH_CHECK.intervalSec * n + HEALTH_CHECK.timeoutSec + 2) * 1000;
  out(`[6/7] health checks: ${web2.name}'s HTTP server stops, then starts again`);
  await l2.stopServer(web2.name);
  const downMs = await waitForHealth(l2.lb, web2.ip, true, bound(HEALTH_CHECK.fall));
  out(
    `      ${web2.name} marked down after ${secs(downMs)} (interval ${HEALTH_CHECK.intervalSec} s × fall ${HEALTH_CHECK.fall}); its slots went to the others`,
  );
  const during = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 60, concurrency: 4 });
  out(`      60 requests meanwhile: ${fmtCounts(during.counts)}; failed ${during.failures}`);
  const stats = await ws.agent('stats');
  out("      tula-dsr stats, the web VIP's pool:");
  const lines = stats.stdout.split('\n');
  const start = lines.findIndex((l) => /^pool .*VIPs?: web\b/.test(l));
  if (start < 0) throw new Error(`tula-dsr stats shows no pool of the web VIP:\n${stats.stdout}${stats.stderr}`);
  for (const line of lines.slice(start, lines.indexOf('', start))) out(`        ${line}`);
  await l2.startServer(web2.name);
  const upMs = await waitForHealth(l2.lb, web2.ip, false, bound(HEALTH_CHECK.rise));
  out(`      ${web2.name} back after ${secs(upMs)} (rise ${HEALTH_CHECK.rise})`);
  const after = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 60, concurrency: 4 });
  out(`      60 requests after: ${fmtCounts(after.counts)}; failed ${after.failures}`);
  if (during.failures || after.failures || during.counts[web2.name] || !after.counts[web2.name]) throw new Error('the failover did not behave (see above)');
}

const fmtCounts = (c: Record<string, number>) =>
  Object.entries(c)
    .sort()
    .map(([n, k]) => `${n} ${k}`)
    .join(', ');

async function run(args: Args, cleanup: Cleanup): Promise<void> {
  const started = Date.now();
  out('tula-dsr demo: L2 Direct Server Return in network namespaces');
  out();
  const l2 = await step('[1/7] lab: client, lb, web1..3 with a real sshd each, HTTP/UDP servers on the backends', () => createL2Lab({ backends: 3 }));
  cleanup.lab = l2;
  const { client, lb, vips, python } = l2;
  out(`      subnet ${l2.lab.subnet}: client ${client.ip}, lb ${lb.ip}, ${l2.backends.map((b) => `${b.name} ${b.ip}`).join(', ')}`);
  out(
    `      VIPs: web ${vips.web}:80 (weighted round robin ${WEIGHTS.join(':')}, HTTP health check every ${HEALTH_CHECK.intervalSec} s), dns ${vips.dns}:5353/udp, any ${vips.any}:* (consistent hash)`,
  );
  out(`      inventory: ${l2.inventoryPath}`);

  const ws = await createWorkspace({ inventory: l2.inventory, inventoryPath: l2.inventoryPath, engine: args.engine });
  cleanup.ws = ws;
  await step(`[2/7] synthesize the example stack (cdktf App in process, ${args.engine} engine)`, () =>
    ws.synth({ weights: WEIGHTS, healthCheck: HEALTH_CHECK }),
  );
  out(`      ${ws.stackDir}/cdk.tf.json`);
  await step('[3/7] terraform init', async () => {
    const r = await ws.terraform(['init', '-input=false', '-no-color']);
    if (r.code !== 0) throw terraformFailed('init', r);
  });
  out('[4/7] terraform apply (each provisioner runs the tula-dsr agent over SSH)');
  const apply = await ws.terraform(['apply', '-auto-approve', '-input=false', '-no-color'], progressPrinter());
  if (apply.code !== 0) throw terraformFailed('apply', apply);
  out(`      ${applySummary(apply.stdout) ?? 'applied'} (${secs(apply.ms)})`);

  out('[5/7] traffic from client');
  await flushFlows(lb);
  const burst = await httpBurst(client, python, { host: vips.web, port: 80, count: REQUESTS, concurrency: 4 });
  const total = WEIGHTS.reduce((a, b) => a + b, 0);
  out(`      HTTP to web ${vips.web}:80, ${REQUESTS} requests, a new connection each:`);
  out(`      ${'backend'.padEnd(9)}${'weight'.padStart(6)}${'requests'.padStart(10)}${'share'.padStart(9)}${'expected'.padStart(10)}`);
  l2.backends.forEach((b, i) => {
    const n = burst.counts[b.name] ?? 0;
    out(
      `      ${b.name.padEnd(9)}${String(WEIGHTS[i]).padStart(6)}${String(n).padStart(10)}${pct(n / REQUESTS).padStart(9)}${pct(WEIGHTS[i] / total).padStart(10)}`,
    );
  });
  const stray = Object.entries(burst.counts).filter(([name]) => !l2.backends.some((b) => b.name === name));
  for (const [name, n] of stray) out(`      ${name.padEnd(9)}${'-'.padStart(6)}${String(n).padStart(10)}`);
  out(`      failed requests: ${burst.failures}${burst.errors.length ? ` (${burst.errors[0]})` : ''}`);
  const udp = await udpBurst(client, python, { host: vips.dns, port: 5353, count: 30 });
  out(
    `      UDP to dns ${vips.dns}:5353, 30 datagrams: ${Object.entries(udp.counts)
      .sort()
      .map(([n, c]) => `${n} ${c}`)
      .join(', ')}; lost ${udp.failures}`,
  );
  const any80 = await httpBurst(client, python, { host: vips.any, port: 80, count: 30 });
  const any8080 = await httpBurst(client, python, { host: vips.any, port: 8080, count: 30 });
  out(`      all-ports VIP any ${vips.any}: port 80 -> ${fmtCounts(any80.counts)}; port 8080 -> ${fmtCounts(any8080.counts)}`);
  const share = await measureByteShare(client, lb, python, { host: vips.web, port: 80 });
  const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
  out(
    `      10 MiB download from web (served by ${share.download.backend ?? '?'}, ${share.download.bytes} bytes${share.download.error ? `, ERROR ${share.download.error}` : ''}):`,
  );
  out(
    `        client eth0 ${mb(share.clientBytes)}, lb eth0 ${(share.balancerBytes / 1e3).toFixed(1)} kB: the balancer carried ${(share.share * 100).toFixed(2)}% of the bytes`,
  );
  out('        (requests go through the balancer; responses go from the backend straight to the client)');

  await showFailover(l2, ws);

  if (args.keep) {
    out();
    out('--keep: the lab stays up. Try, in another shell:');
    out(`  ip netns exec ${client.netns} curl -s http://${vips.web}/`);
    out(`  ip netns exec ${lb.netns} nft list table netdev tula_dsr`);
    out(`  node ${path.relative(process.cwd(), path.join(__dirname, '..', 'agent', 'cli.js'))} check ${ws.stackDir}`);
    out(`  ssh: ${lb.sshArgv().join(' ')}`);
    out('Ctrl-C tears everything down.');
    await new Promise<void>((resolve) => {
      cleanup.release = resolve;
    });
    out();
  } else {
    out('[7/7] terraform destroy (each destroy provisioner runs `tula-dsr remove`)');
    const destroy = await ws.terraform(['destroy', '-auto-approve', '-input=false', '-no-color'], progressPrinter());
    if (destroy.code !== 0) throw terraformFailed('destroy', destroy);
    out(`      ${applySummary(destroy.stdout) ?? 'destroyed'} (${secs(destroy.ms)})`);
  }
  await step('teardown: namespaces, processes, files', async () => {
    await l2.teardown();
    ws.remove();
  });
  cleanup.lab = undefined;
  cleanup.ws = undefined;
  out(`total ${secs(Date.now() - started)}`);
  if (burst.failures > 0 || share.download.bytes !== share.download.expected) throw new Error('the demo saw failed requests (see above)');
  const l3 = findL3Runner();
  out(l3 ? 'L3 (IPIP, in a qemu VM): npm run demo -- --l3' : 'L3 (IPIP) demo: not available yet (the VM lab has no demo runner)');
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (typeof args === 'string') {
    process.stderr.write(`${args ? `demo: ${args}\n` : ''}${USAGE}\n`);
    return args ? 64 : 0;
  }
  if (args.l3) {
    const runner = findL3Runner();
    if (!runner) {
      process.stderr.write('demo: the L3 (IPIP) demo is not available yet: the VM lab (lab/vm) provides no demo runner. `npm run demo` runs the L2 demo.\n');
      return 2;
    }
    return runner({ keep: args.keep, log: out });
  }
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    process.stderr.write('demo: needs root: it creates network namespaces, runs sshd and loads nft rules. Run it as root (sudo npm run demo).\n');
    return 1;
  }
  if (spawnSync('terraform', ['version'], { stdio: 'ignore' }).status !== 0) {
    process.stderr.write('demo: terraform is not on PATH: install Terraform (1.11 is tested) and run the demo again.\n');
    return 1;
  }
  const cleanup: Cleanup = {};
  const onSignal = () => {
    if (cleanup.release) {
      cleanup.release();
      return;
    }
    process.stderr.write('\ndemo: interrupted; tearing down\n');
    void Promise.resolve(cleanup.lab?.teardown())
      .catch(() => undefined)
      .finally(() => {
        cleanup.ws?.remove();
        process.exit(130);
      });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // the lab removes itself on exit (topology.ts); the workspace folder goes with it, whatever ends the demo
  process.once('exit', () => cleanup.ws?.remove());
  process.stdout.on('error', () => undefined); // a closed pipe (`npm run demo | head`) must not skip the teardown
  try {
    if (args.ha) await runHaDemo({ engine: args.engine, log: out, cleanup });
    else await run(args, cleanup);
    return 0;
  } catch (error) {
    process.stderr.write(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    if (cleanup.lab) await cleanup.lab.teardown().catch((e: Error) => process.stderr.write(`teardown: ${e.message}\n`));
    cleanup.ws?.remove();
  }
}

main().then((code) => process.exit(code));
