/**
 * `npm run demo -- --ha`: a balancer pair (lb primary, lb2 secondary, keepalived VRRPv3 with unicast peers) in the
 * namespace lab. It deploys the example stack's VIPs on the pair, then takes the primary's interface down while a
 * request loop and throttled 10 MiB downloads on the consistent-hash and the weighted-round-robin VIP run, and prints
 * the flow copy's lag, the failover time, the failed requests and the downloads' outcomes (the round-robin one lives on
 * through the flow copy); the same at keepalived's default interval (1 s); then destroys it all.
 */
import { createL2Lab, L2Lab } from './l2/lab';
import { applySummary, createWorkspace, RunResult, Workspace } from './l2/deploy';
import { FailoverResult, faultAt, measureCopyLag, measureFailover, waitForFlowCopies, waitForVip } from './l2/failover';
import { bigBodySha256, startDownload } from './l2/traffic';
import type { Engine } from '../constructs';
import type { ExampleOptions } from './example-stack';

export interface HaDemoCleanup {
  lab?: L2Lab;
  ws?: Workspace;
}

const secs = (ms: number | null) => (ms === null ? 'never' : `${(ms / 1000).toFixed(2)} s`);

function check(what: string, r: RunResult): void {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${`${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-30).join('\n')}`);
}

/** One failover (interface down) and its failback at `advertIntervalSec`, printed. */
async function failoverRound(l2: L2Lab, ws: Workspace, advertIntervalSec: number, log: (line: string) => void): Promise<FailoverResult> {
  const options: ExampleOptions = { weights: [1, 1, 1], pair: { advertIntervalSec } };
  ws.synth(options);
  const apply = await ws.terraform(['apply', '-auto-approve', '-input=false', '-no-color']);
  check('terraform apply', apply);
  await waitForVip(l2.lb, l2.vips.web, true, 15_000);
  log(`  advert_int ${advertIntervalSec} s: ${applySummary(apply.stdout) ?? 'applied'}; lb holds the VIPs`);
  const lb2 = l2.lb2!;
  const lags = (await measureCopyLag(l2, lb2, l2.vips.web, 5)).map((x) => (x === null ? 'none' : `${x} ms`));
  log(`    flow copy lag (a SYN on lb to its entry in lb2's flow map), 5 connections: ${lags.join(', ')}`);
  const download = startDownload(l2.client, l2.python, { host: l2.vips.any, port: 80, path: '/slow?seconds=8', timeoutSec: 15 });
  const wrr = startDownload(l2.client, l2.python, { host: l2.vips.web, port: 80, path: '/slow?seconds=12', timeoutSec: 15 });
  // an established flow is what the copy keeps: one younger than the copy's lag may be reset by a failover
  const port = await wrr.connected;
  if (port === null) throw new Error(`the weighted-round-robin download did not connect: ${(await wrr.result).error}`);
  await waitForFlowCopies(l2, { active: l2.lb, passive: lb2, vip: l2.vips.web, ports: [port], timeoutMs: 6000 });
  const failover = await measureFailover(l2, { vip: l2.vips.web, next: lb2, fault: () => faultAt(l2.lb, 'ip link set eth0 down') });
  log(
    `    lb's eth0 down: lb2 held the VIPs after ${secs(failover.takeoverMs)}; first request served after ${secs(failover.firstSuccessMs)}; ${failover.failures} of ${failover.requests} requests failed`,
  );
  const failback = await measureFailover(l2, { vip: l2.vips.web, next: l2.lb, fault: () => faultAt(l2.lb, 'ip link set eth0 up') });
  log(`    lb's eth0 up: lb took the VIPs back after ${secs(failback.takeoverMs)}; ${failback.failures} of ${failback.requests} requests failed`);
  const d = await download.result;
  log(
    `    10 MiB throttled download on the consistent-hash VIP across both: ${d.bytes} of ${d.expected} bytes from ${d.backend ?? '?'}${d.error ? `, ERROR ${d.error}` : ''}`,
  );
  if (d.bytes !== d.expected) throw new Error('the download did not survive the failover');
  const w = await wrr.result;
  const intact = w.backend !== null && w.sha256 === bigBodySha256(w.backend);
  log(
    `    10 MiB throttled download on the weighted-round-robin VIP (kept by the flow copy): ${w.bytes} of ${w.expected} bytes from ${w.backend ?? '?'}, sha256 ${intact ? 'intact' : 'WRONG'}${w.error ? `, ERROR ${w.error}` : ''}`,
  );
  if (w.bytes !== w.expected || !intact) throw new Error('the weighted-round-robin download did not survive the failover');
  return failover;
}

export async function runHaDemo(o: { engine: Engine; log: (line: string) => void; cleanup: HaDemoCleanup }): Promise<void> {
  const { log } = o;
  log('tula-dsr demo --ha: a balancer pair (keepalived VRRPv3, unicast peers) in network namespaces');
  const l2 = await createL2Lab({ backends: 3, pair: true });
  o.cleanup.lab = l2;
  log(`  lab ${l2.lab.subnet}: client ${l2.client.ip}, lb ${l2.lb.ip} (primary), lb2 ${l2.lb2!.ip} (secondary), VIPs web ${l2.vips.web}, any ${l2.vips.any}`);
  const ws = await createWorkspace({ inventory: l2.inventory, inventoryPath: l2.inventoryPath, engine: o.engine });
  o.cleanup.ws = ws;
  ws.synth({ weights: [1, 1, 1], pair: { advertIntervalSec: 0.2 } });
  check('terraform init', await ws.terraform(['init', '-input=false', '-no-color']));
  const fast = await failoverRound(l2, ws, 0.2, log);
  const slow = await failoverRound(l2, ws, 1, log);
  log(`  failover time (fault to first request served by lb2): ${secs(fast.firstSuccessMs)} at advert_int 0.2 s, ${secs(slow.firstSuccessMs)} at 1 s`);
  const destroy = await ws.terraform(['destroy', '-auto-approve', '-input=false', '-no-color']);
  check('terraform destroy', destroy);
  log(`  ${applySummary(destroy.stdout) ?? 'destroyed'}`);
  await l2.teardown();
  ws.remove();
  o.cleanup.lab = undefined;
  o.cleanup.ws = undefined;
}
