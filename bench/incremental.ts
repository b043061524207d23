/**
 * What a small change costs on a large host, end to end through the agent CLI (`tula-dsr apply --spec`, node
 * start-up, SSH with host key check, facts, apply), on a namespace lab with real sshd and nft:
 *
 *  - a balancer with `vips` L2 VIPs × 4 backends (lab hosts, MACs resolved by ARP) and `flows` open flows in its
 *    flow map (a busy balancer: listing the table lists them too): one VIP's backend weights change and change back,
 *    `runs` times each way, and a no-op apply;
 *  - a backend host carrying `vips` VIPs on lo: one VIP is added and removed again, `runs` times each way.
 *
 *   node dist/bench/incremental.js [--vips N] [--flows N] [--runs N]
 *
 * VIPs come from 10.214.0.0/18 (outside every lab subnet) and flows are written straight into the flow map; no
 * traffic is sent.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatIpv4 } from '../model';
import { createLab, Lab, LabHost } from '../lab/topology';
import { AgentPath, benchSsh, benchVip, runCli, vipAddress, vipName } from './l2-dataplane';
import { RUNTIME_DIR_ENV } from '../agent/daemon/paths';
import { stopAgentDaemons } from '../lab/agent-daemons';
import { Stat, stat } from './stats';
import { CACHE_DIR_ENV } from '../agent/facts/file-cache';

const PORT = 80;
const BACKENDS = ['be1', 'be2', 'be3', 'be4'];

export interface IncrementalResult {
  readonly vips: number;
  readonly flows: number;
  /** Cold apply of the whole balancer, and of the backend host (once each). */
  readonly balancerColdMs: number;
  readonly backendColdMs: number;
  /** One VIP's weights change (there and back: both directions pooled), by each path, side by side. */
  readonly weightChange: Record<AgentPath, Stat>;
  readonly balancerNoop: Stat;
  /** The detail the agent reported for the nft table on the last weight change. */
  readonly weightChangeDetail: string;
  readonly backendAdd: Record<AgentPath, Stat>;
  readonly backendRemove: Record<AgentPath, Stat>;
}

const PATHS: readonly AgentPath[] = ['cli', 'daemon', 'perl'];

const ssh = benchSsh;

/** The balancer: VIPs 0..count-1 × be1..be4 (weight 1), except `heavy`, whose first backend weighs 2. */
function balancerSpec(lab: Lab, count: number, heavy?: number): string {
  const backends = (i: number) =>
    BACKENDS.map((name, b) => ({ path: `bench/be/${name}`, name, ip: lab.hosts[name].ip, weight: i === heavy && b === 0 ? 2 : 1 }));
  const vips = Array.from({ length: count }, (_, i) => benchVip(i, backends(i), PORT));
  const lb = lab.hosts.lb;
  return JSON.stringify({ kind: 'balancer', path: 'bench/lb', name: 'lb', ssh: ssh(lab, lb), interface: 'eth0', address: lb.ip, subnet: lab.subnet, vips });
}

function backendSpec(lab: Lab, count: number): string {
  const h = lab.hosts.be1;
  const services = Array.from({ length: count }, (_, i) => ({
    path: `bench/vip/${vipName(i)}/be1`,
    ip: vipAddress(i),
    port: PORT,
    protocol: 'tcp',
    mode: 'l2',
  }));
  return JSON.stringify({ kind: 'backend', path: 'bench/be/be1', name: 'be1', ssh: ssh(lab, h), address: h.ip, services });
}

interface CliRun {
  readonly ms: number;
  readonly changed: number;
  readonly tasks: { name: string; status: string; detail: string }[];
}

async function apply(dir: string, name: string, spec: string, path: AgentPath = 'cli'): Promise<CliRun> {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, spec);
  const r = await runCli(['apply', '--spec', file, '--json', '--timeout', '120'], path);
  if (r.code !== 0) throw new Error(`tula-dsr apply ${name} failed (exit ${r.code}):\n${r.stderr.slice(-2000)}\n${r.stdout.slice(-2000)}`);
  const json = JSON.parse(r.stdout) as { results: { counts: { changed: number }; tasks: CliRun['tasks'] }[] };
  return { ms: r.ms, changed: json.results[0].counts.changed, tasks: json.results[0].tasks };
}

/** `count` open flows in the balancer's flow map, written in one transaction (as the packet path would have). */
async function fillFlows(lb: LabHost, count: number, mac: string): Promise<void> {
  if (!count) return;
  const elements = Array.from({ length: count }, (_, i) => `${formatIpv4(0x0a640000 + i)} . ${1024 + (i % 60000)} . ${vipAddress(0)} . ${PORT} : ${mac}`);
  const r = await lb.exec(['nft', '-f', '-'], `add element netdev tula_dsr flows_l2_tcp { ${elements.join(', ')} }\n`);
  if (r.code !== 0) throw new Error(`lb: loading ${count} flows failed: ${r.stderr}`);
}

export async function measureIncremental(o: { vips?: number; flows?: number; runs?: number; log?: (line: string) => void } = {}): Promise<IncrementalResult> {
  const vips = o.vips ?? 10000;
  const flows = o.flows ?? 100000;
  const runs = o.runs ?? 3;
  const log = o.log ?? (() => undefined);
  const dir = mkdtempSync(join(tmpdir(), 'tula-incremental-bench-'));
  // the CLI runs keep their copies of the hosts' files (FileCache) in the bench's own folder, as a user's controller
  // keeps them in ~/.cache: the first run after the cold apply already finds them
  const cacheBefore = process.env[CACHE_DIR_ENV];
  process.env[CACHE_DIR_ENV] = join(dir, 'agent-cache');
  // the daemon that the provisioners' client starts serves from the bench's folder, and is stopped at the end
  const daemonsBefore = process.env[RUNTIME_DIR_ENV];
  const daemons = join(dir, 'daemons');
  mkdirSync(daemons, { mode: 0o700 });
  process.env[RUNTIME_DIR_ENV] = daemons;
  let lab: Lab | undefined;
  try {
    lab = await createLab({ hosts: [{ name: 'lb' }, ...BACKENDS.map((name) => ({ name }))] });
    const lb = lab.hosts.lb;
    const cold = await apply(dir, 'lb', balancerSpec(lab, vips));
    log(`incremental: balancer cold apply of ${vips} VIPs: ${(cold.ms / 1000).toFixed(1)} s`);
    await fillFlows(lb, flows, lab.hosts.be1.mac);
    const weight: Record<AgentPath, number[]> = { cli: [], daemon: [], perl: [] };
    const noop: number[] = [];
    let detail = '';
    // the changed VIP sits in the middle of the table's order
    const heavy = Math.floor(vips / 2);
    // the first run after the cold apply lists the table with its flows (the generation the cold apply recorded
    // moved when the flows were written): not the case measured
    await apply(dir, 'lb', balancerSpec(lab, vips, heavy));
    await apply(dir, 'lb', balancerSpec(lab, vips));
    for (let r = 0; r < runs; r++) {
      for (const path of PATHS) {
        for (const spec of [balancerSpec(lab, vips, heavy), balancerSpec(lab, vips)]) {
          const x = await apply(dir, 'lb', spec, path);
          const nft = x.tasks.find((t) => t.name.startsWith('nft table'));
          if (nft?.status !== 'changed') throw new Error(`a weight change left the nft table ${nft?.status ?? 'untouched'}: ${JSON.stringify(nft)}`);
          detail = nft.detail;
          weight[path].push(x.ms);
          log(`incremental: one VIP's weights (${path}): ${x.ms.toFixed(0)} ms (${x.changed} changed: ${detail})`);
        }
      }
      const n = await apply(dir, 'lb', balancerSpec(lab, vips));
      if (n.changed !== 0) throw new Error(`the no-op apply changed ${n.changed} tasks`);
      noop.push(n.ms);
      log(`incremental: balancer no-op: ${n.ms.toFixed(0)} ms`);
    }

    const backendCold = await apply(dir, 'be1', backendSpec(lab, vips));
    log(`incremental: backend cold apply of ${vips} VIPs: ${(backendCold.ms / 1000).toFixed(1)} s`);
    const add: Record<AgentPath, number[]> = { cli: [], daemon: [], perl: [] };
    const remove: Record<AgentPath, number[]> = { cli: [], daemon: [], perl: [] };
    for (let r = 0; r < runs; r++) {
      for (const path of PATHS) {
        for (const [count, into] of [
          [vips + 1, add],
          [vips, remove],
        ] as const) {
          const x = await apply(dir, 'be1', backendSpec(lab, count), path);
          if (x.changed === 0) throw new Error(`changing a backend to ${count} VIPs changed nothing`);
          into[path].push(x.ms);
          log(`incremental: backend to ${count} VIPs (${path}): ${x.ms.toFixed(0)} ms (${x.changed} changed)`);
        }
      }
    }
    const stats = (by: Record<AgentPath, number[]>) => ({ cli: stat(by.cli), daemon: stat(by.daemon), perl: stat(by.perl) });
    return {
      vips,
      flows,
      balancerColdMs: cold.ms,
      backendColdMs: backendCold.ms,
      weightChange: stats(weight),
      balancerNoop: stat(noop),
      weightChangeDetail: detail,
      backendAdd: stats(add),
      backendRemove: stats(remove),
    };
  } finally {
    await stopAgentDaemons(daemons);
    if (daemonsBefore === undefined) delete process.env[RUNTIME_DIR_ENV];
    else process.env[RUNTIME_DIR_ENV] = daemonsBefore;
    await lab?.teardown();
    if (cacheBefore === undefined) delete process.env[CACHE_DIR_ENV];
    else process.env[CACHE_DIR_ENV] = cacheBefore;
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const arg = (name: string) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : undefined);
  measureIncremental({ vips: arg('--vips'), flows: arg('--flows'), runs: arg('--runs'), log: (l) => process.stderr.write(`${l}\n`) })
    .then((r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`))
    .catch((error) => {
      process.stderr.write(`bench: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(1);
    });
}
