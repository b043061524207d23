/**
 * Deploying tula-dsr into the VM lab, and the traffic and counters that show what it did. Shared by the L3
 * end-to-end test (test/l3) and the L3 demo (lab/vm/demo.ts).
 *
 *   const ws = await createL3Workspace(lab.inventory);       // temp folder, synthesized stack, terraform env
 *   await ws.terraform(['init', '-input=false', '-no-color']);
 *   await ws.terraform(['apply', '-auto-approve', '-input=false', '-no-color'], { onLine });
 *   const burst = await httpBurst(lab, { host: inv.vips.web, port: inv.ports.http, count: 40 });
 *
 * The stack is synthesized with the real constructs in process (engine terraform_data by default: Terraform needs
 * no provider). Its provisioners run the tula-dsr/agent of the project, the workspace, whose
 * `node_modules/tula-dsr` is this checkout, so dist/ must be built.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, LocalBackend, TerraformStack } from 'cdktf';
import { BackendHost, Balancer, DsrVip, ENGINE_CONTEXT_KEY, Engine, HealthCheck, PROJECT_ROOT_CONTEXT_KEY } from '../../constructs';
import { prepareTerraformEnv } from '../terraform/env';
import { RUNTIME_DIR_ENV } from '../../agent/daemon/paths';
import { signalAgentDaemons } from '../agent-daemons';
import { agentRuntimeDir, runStreaming, RunResult } from '../l2/deploy';
import type { VmHostName } from './guest';
import { repoRoot } from './paths';
import type { VmInventory, VmLab } from './vm-lab';

export type { RunResult } from '../l2/deploy';

export const L3_STACK_NAME = 'l3';
/** Weighted round robin of the web VIP over be1 and be2. */
export const L3_WEIGHTS: readonly [number, number] = [1, 3];
/** Weighted round robin of the IPv6 stack's web VIP over be1, be2 and be3. */
export const L3_IPV6_WEIGHTS: readonly [number, number, number] = [1, 2, 3];

export interface L3StackOptions {
  /** @default 'terraform_data' */
  readonly engine?: Engine;
  /** Weights of be1 and be2 on the web VIP. @default L3_WEIGHTS */
  readonly weights?: readonly [number, number];
  /**
   * Health checks of the web and dns VIPs. The VM has no Node, so a stack with checks cannot run the balancer
   * runtime there; it is synthesized for its probe targets only.
   * @default - none
   */
  readonly healthChecks?: { readonly web?: HealthCheck; readonly dns?: HealthCheck };
  /**
   * 6: the IPv6 stack instead (synthesizeL3Ipv6Stack): the VIPs of `vips6` over be1, be2 and be3 (ip6tnl).
   * @default 4
   */
  readonly family?: 4 | 6;
}

/** The VM lab's L3 app and stack, its state beside `outdir`, and the SSH target of a lab host. */
function l3StackScaffold(outdir: string, i: VmInventory, o: L3StackOptions) {
  // the workspace above outdir is the project: its node_modules/tula-dsr is what the provisioners may run
  const app = new App({ outdir, context: { [ENGINE_CONTEXT_KEY]: o.engine ?? 'terraform_data', [PROJECT_ROOT_CONTEXT_KEY]: path.dirname(outdir) } });
  const stack = new TerraformStack(app, L3_STACK_NAME);
  // cdktf's default local state is <cwd>/terraform.l3.tfstate: the repository, shared by concurrent runs
  new LocalBackend(stack, { path: path.join(outdir, '..', 'terraform.tfstate') });
  const ssh = (h: { sshHost: string; sshPort: number; hostKey: string }) => ({
    host: h.sshHost,
    port: h.sshPort,
    hostKey: h.hostKey,
    privateKeyPath: i.privateKeyPath,
  });
  return { app, stack, ssh };
}

/**
 * The L3 stack: one balancer, two backend hosts on other subnets, an L3 TCP VIP `web` (weighted round robin over
 * be1 and be2) and an L3 UDP VIP `dns` (round robin). Synthesizes into `outdir` and returns the stack folder. The
 * Terraform state is `<outdir>/../terraform.tfstate`.
 */
export function synthesizeL3Stack(outdir: string, i: VmInventory, o: L3StackOptions = {}): string {
  const [w1, w2] = o.weights ?? L3_WEIGHTS;
  const { app, stack, ssh } = l3StackScaffold(outdir, i, o);
  const lb = new Balancer(stack, 'lb', { ssh: ssh(i.balancer), interface: i.balancer.interface, address: i.balancer.address });
  const [be1, be2] = i.backends.map((b) => new BackendHost(stack, b.name, { ssh: ssh(b), address: b.address }));
  const web = new DsrVip(stack, 'web', {
    balancer: lb,
    ip: i.vips.web,
    port: i.ports.http,
    mode: 'l3',
    algorithm: 'weighted-round-robin',
    ...(o.healthChecks?.web && { healthCheck: o.healthChecks.web }),
  });
  web.addBackend('be1', { host: be1, weight: w1 });
  web.addBackend('be2', { host: be2, weight: w2 });
  const dns = new DsrVip(stack, 'dns', {
    balancer: lb,
    ip: i.vips.dns,
    port: i.ports.udp,
    protocol: 'udp',
    mode: 'l3',
    algorithm: 'round-robin',
    ...(o.healthChecks?.dns && { healthCheck: o.healthChecks.dns }),
  });
  dns.addBackend('be1', { host: be1 });
  dns.addBackend('be2', { host: be2 });
  app.synth();
  return path.join(outdir, 'stacks', L3_STACK_NAME);
}

export interface L3Workspace {
  /** The temp folder: cdktf.out/, terraform.tfstate, the Terraform CLI config, node_modules/tula-dsr. */
  readonly dir: string;
  /** The synthesized stack (cdk.tf.json); terraform runs here. */
  readonly stackDir: string;
  /** Environment for terraform and the agent CLI (no telemetry, no prompts). */
  readonly env: NodeJS.ProcessEnv;
  /** `terraform <args>` in the stack folder; each output line goes to onLine as it arrives. Resolves whatever the exit code. */
  terraform(args: readonly string[], o?: { onLine?: (line: string) => void; timeoutMs?: number }): Promise<RunResult>;
  /** The agent CLI from dist/ (what the provisioners run): `node dist/agent/cli.js <args>`. */
  agent(args: readonly string[]): Promise<RunResult>;
  remove(): void;
}

/**
 * The IPv6 L3 stack: one balancer (its IPv6 address the outer source of the ip6tnl tunnels), three backend hosts on
 * other subnets, an L3 TCP VIP `web6` (weighted round robin 1:2:3 over be1, be2, be3) and an L3 UDP VIP `dns6`
 * (round robin). Synthesizes into `outdir` and returns the stack folder, as synthesizeL3Stack does.
 */
export function synthesizeL3Ipv6Stack(outdir: string, i: VmInventory, o: L3StackOptions = {}): string {
  const { app, stack, ssh } = l3StackScaffold(outdir, i, o);
  // the hosts are dual stack; their IPv4 address is given so that it does not default to the SSH target (127.0.0.1)
  const lb = new Balancer(stack, 'lb', {
    ssh: ssh(i.balancer),
    interface: i.balancer.interface,
    address: i.balancer.address,
    ipv6Address: i.balancer.address6,
  });
  const hosts = i.backends6.map((b) => new BackendHost(stack, b.name, { ssh: ssh(b), address: b.address, ipv6Address: b.address6 }));
  const web = new DsrVip(stack, 'web6', {
    balancer: lb,
    ip: i.vips6.web,
    port: i.ports.http,
    mode: 'l3',
    algorithm: 'weighted-round-robin',
    ...(o.healthChecks?.web && { healthCheck: o.healthChecks.web }),
  });
  hosts.forEach((host, k) => web.addBackend(i.backends6[k].name, { host, weight: L3_IPV6_WEIGHTS[k] }));
  const dns = new DsrVip(stack, 'dns6', {
    balancer: lb,
    ip: i.vips6.dns,
    port: i.ports.udp,
    protocol: 'udp',
    mode: 'l3',
    algorithm: 'round-robin',
    ...(o.healthChecks?.dns && { healthCheck: o.healthChecks.dns }),
  });
  hosts.forEach((host, k) => dns.addBackend(i.backends6[k].name, { host }));
  app.synth();
  return path.join(outdir, 'stacks', L3_STACK_NAME);
}

/** A temp folder with the synthesized L3 stack, ready for `terraform init`. */
export async function createL3Workspace(inv: VmInventory, o: L3StackOptions & { parent?: string } = {}): Promise<L3Workspace> {
  const root = repoRoot();
  const dir = mkdtempSync(path.join(o.parent ?? os.tmpdir(), 'tula-dsr-l3-'));
  try {
    mkdirSync(path.join(dir, 'node_modules'));
    symlinkSync(root, path.join(dir, 'node_modules', 'tula-dsr'), 'dir');
    // the null_resource engine installs hashicorp/null from the offline test mirror; terraform_data needs nothing
    const env: NodeJS.ProcessEnv = { ...(await prepareTerraformEnv(dir)).env, [RUNTIME_DIR_ENV]: agentRuntimeDir(dir) };
    const stackDir = (o.family === 6 ? synthesizeL3Ipv6Stack : synthesizeL3Stack)(path.join(dir, 'cdktf.out'), inv, o);
    return {
      dir,
      stackDir,
      env,
      terraform: (args, t = {}) =>
        runStreaming([env.TERRAFORM_BIN || 'terraform', ...args], {
          cwd: stackDir,
          env,
          timeoutMs: t.timeoutMs ?? 180_000,
          onLine: t.onLine && ((l) => t.onLine!(l)),
        }),
      agent: (args) => runStreaming([process.execPath, path.join(root, 'dist', 'agent', 'cli.js'), ...args], { cwd: dir, env, timeoutMs: 120_000 }),
      remove: () => {
        signalAgentDaemons(agentRuntimeDir(dir));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Terraform's output, last lines first cut: for an error message. */
export function terraformFailure(what: string, r: RunResult, lines = 40): Error {
  const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-lines).join('\n');
  return new Error(`terraform ${what} exited with ${r.code}:\n${tail}`);
}

/** `nft list counter …` on a lab host → packets. */
export async function nftCounter(lab: VmLab, host: VmHostName, family: string, table: string, name: string): Promise<number> {
  const out = await lab.execOk(host, `nft list counter ${family} ${table} ${name}`);
  const m = /packets (\d+)/.exec(out);
  if (!m) throw new Error(`no packet count for ${family} ${table} ${name} on ${host}:\n${out}`);
  return Number(m[1]);
}

/** An address as a URL's host: IPv6 in brackets. */
export const urlHost = (ip: string): string => (ip.includes(':') ? `[${ip}]` : ip);

/** Counts equal lines (blank lines ignored). */
export function tally(lines: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const l of lines
    .split('\n')
    .map((x) => x.trim())
    .filter(Boolean))
    counts[l] = (counts[l] ?? 0) + 1;
  return counts;
}

/** Empties one of the balancer's flow maps (flows_l3_tcp, flows_l3_udp6, …), so that the next flows are scheduled afresh. */
export async function flushFlows(lab: VmLab, map: `flows_l3_${'tcp' | 'udp'}${'' | '6'}`): Promise<void> {
  await lab.execOk('lb', `nft flush map netdev tula_dsr ${map}`);
}

export interface BurstResult {
  /** Answers per backend name. */
  readonly counts: Record<string, number>;
  readonly failures: number;
  /** The first few failure lines. */
  readonly errors: string[];
}

function burstResult(out: string): BurstResult {
  const counts: Record<string, number> = {};
  const errors: string[] = [];
  let failures = 0;
  for (const l of out
    .split('\n')
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (l.startsWith('failed')) {
      failures++;
      if (errors.length < 3) errors.push(l);
    } else counts[l] = (counts[l] ?? 0) + 1;
  }
  return { counts, failures, errors };
}

/**
 * `count` HTTP GETs of /name from the client, each a new connection (busybox wget, 5 s each), in `parallel` loops.
 * The kernel picks the source ports; Linux hands out successive ports towards one destination, so a few hundred
 * connections never reuse a 4-tuple (which the balancer would rightly treat as the same flow). A loop stops at its
 * first failure.
 */
export async function httpBurst(lab: VmLab, o: { host: string; port: number; count: number; parallel?: number }): Promise<BurstResult> {
  const parallel = Math.max(1, Math.min(o.parallel ?? 1, o.count));
  const per = Array.from({ length: parallel }, (_, k) => Math.floor(o.count / parallel) + (k < o.count % parallel ? 1 : 0));
  const url = `http://${urlHost(o.host)}${o.port === 80 ? '' : `:${o.port}`}/name`;
  const loop = (n: number) => `for i in $(seq ${n}); do timeout 5 wget -q -O - ${url} || { echo "failed wget $?"; break; }; done`;
  const script =
    parallel === 1
      ? loop(o.count)
      : ['d=$(mktemp -d)', ...per.map((n, k) => `(${loop(n)}) > "$d/${k}" 2>&1 &`), 'wait', 'cat "$d"/*', 'rm -rf "$d"'].join('\n');
  return burstResult(await lab.execOk('client', script));
}

/**
 * `count` UDP clients at once, each from its own fixed source port `sourcePortBase + i` (a new flow). socat's socket
 * is connected to VIP:port, so it only accepts answers sourced from the VIP; it waits up to 3 s for one and exits 0
 * either way, hence the empty-answer test. A datagram lost on the emulated (slow, shared) VM is sent again, up to
 * three times, from the same port, so it stays the same flow.
 */
export async function udpBurst(lab: VmLab, o: { host: string; port: number; count: number; sourcePortBase?: number }): Promise<BurstResult> {
  const target = o.host.includes(':') ? `UDP6:[${o.host}]` : `UDP4:${o.host}`;
  const ask = `echo ping | timeout 8 socat -t 3 - ${target}:${o.port},sourceport=$((${o.sourcePortBase ?? 40000} + i)),reuseaddr`;
  const out = await lab.execOk(
    'client',
    [
      'd=$(mktemp -d)',
      // one answer per client: a late answer to an earlier attempt can reach a retry's socket (same port) too
      `for i in $(seq ${o.count}); do (for a in 1 2 3; do r=$(${ask} | head -n 1); [ -n "$r" ] && break; done; echo "\${r:-failed: no answer from port $((${o.sourcePortBase ?? 40000} + i))}") > "$d/$i" & done`,
      'wait',
      'cat "$d"/*',
      'rm -rf "$d"',
    ].join('\n'),
  );
  return burstResult(out);
}

/** rx + tx bytes of a lab host's interface. */
export async function interfaceBytes(lab: VmLab, host: VmHostName, dev = 'eth0'): Promise<number> {
  const out = await lab.execOk(host, `cat /sys/class/net/${dev}/statistics/rx_bytes /sys/class/net/${dev}/statistics/tx_bytes`);
  const [rx, tx] = out.trim().split('\n').map(Number);
  if (!Number.isFinite(rx) || !Number.isFinite(tx)) throw new Error(`${host}: cannot read the ${dev} byte counters: ${out}`);
  return rx + tx;
}

export interface VmByteShare {
  /** The backend whose /big the client received (by its hash), or null for a corrupt or failed download. */
  readonly backend: string | null;
  readonly bytes: number;
  readonly expected: number;
  readonly error?: string;
  /** Bytes the client's eth0 received and sent during the download. */
  readonly clientBytes: number;
  /** Bytes the balancer's eth0 received and sent during the download (the requests and ACKs, tunnelled). */
  readonly balancerBytes: number;
  /** balancerBytes / clientBytes. */
  readonly share: number;
}

/** Downloads /big (1 MiB, random per backend) through a VIP and compares the balancer's eth0 bytes with the client's. */
export async function measureByteShare(lab: VmLab, o: { host: string; port: number }): Promise<VmByteShare> {
  const inv = lab.inventory;
  const hashes = await lab.execOk(
    'router',
    `for b in ${inv.backends.map((b) => b.name).join(' ')}; do echo "$(sha256sum < /srv/$b/big | cut -c1-64) $b"; done`,
  );
  const owner = Object.fromEntries(
    hashes
      .trim()
      .split('\n')
      .map((l) => l.split(' ') as [string, string]),
  );
  const [c0, l0] = await Promise.all([interfaceBytes(lab, 'client'), interfaceBytes(lab, 'lb')]);
  const out = await lab.execOk(
    'client',
    [
      `timeout 60 wget -q -O /tmp/big http://${o.host}${o.port === 80 ? '' : `:${o.port}`}/big; rc=$?`,
      'echo "$rc $(wc -c < /tmp/big) $(sha256sum < /tmp/big | cut -c1-64)"',
      'rm -f /tmp/big',
    ].join('\n'),
  );
  const [c1, l1] = await Promise.all([interfaceBytes(lab, 'client'), interfaceBytes(lab, 'lb')]);
  const [rc, bytes, hash] = out.trim().split(' ');
  const backend = owner[hash] ?? null;
  const error = rc !== '0' ? `wget exited with ${rc}` : backend ? undefined : "the download matches no backend's /big";
  const clientBytes = c1 - c0;
  const balancerBytes = l1 - l0;
  return {
    backend,
    bytes: Number(bytes),
    expected: inv.bigBytes,
    ...(error ? { error } : {}),
    clientBytes,
    balancerBytes,
    share: clientBytes > 0 ? balancerBytes / clientBytes : 1,
  };
}

export interface DsrCounters {
  /** VIP-sourced packets entering and leaving the balancer's eth0 (lab_watch): DSR means 0. */
  readonly balancerIn: number;
  readonly balancerOut: number;
  /** VIP-sourced packets the router forwarded from the balancer (0) and from the backends (the replies). */
  readonly routerFromLb: number;
  readonly routerFromBackends: number;
  /** Packets to a VIP that entered the balancer. */
  readonly balancerVipIn: number;
}

/** The lab's observer counters (guest.ts): they exist before tula-dsr runs and count since boot. */
export async function dsrCounters(lab: VmLab): Promise<DsrCounters> {
  const [balancerIn, balancerOut, balancerVipIn, routerFromLb, routerFromBackends] = await Promise.all([
    nftCounter(lab, 'lb', 'netdev', 'lab_watch', 'vip_src_in'),
    nftCounter(lab, 'lb', 'netdev', 'lab_watch', 'vip_src_out'),
    nftCounter(lab, 'lb', 'netdev', 'lab_watch', 'vip_dst_in'),
    nftCounter(lab, 'router', 'inet', 'lab_router', 'vip_from_lb'),
    nftCounter(lab, 'router', 'inet', 'lab_router', 'vip_from_backends'),
  ]);
  return { balancerIn, balancerOut, balancerVipIn, routerFromLb, routerFromBackends };
}
