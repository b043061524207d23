/**
 * Health probes through the VIP in the VM lab. The VM has no Node, so the balancer runtime cannot run there; these
 * helpers do what it would: render the probe routing with the model for the L3 stack with health checks, install it
 * on the balancer with the runtime's own installProbeRouting (its commands run over SSH), and probe with socat from
 * the source port the runtime would use.
 *
 *   const plan = planL3Probes(inv, { web: { kind: 'tcp', port: 9090 } });
 *   await installProbeRouting(plan.routing, balancerRunner(lab));
 *   await socatProbe(lab, { ip: '10.10.3.2', port: 9090, protocol: 'tcp', sourcePort: plan.ports.get(key) });
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseHostSpec, readStackHosts } from '../../agent/spec-input';
import type { HealthCheck } from '../../constructs';
import { assignProbePorts, BalancerSpec, ProbeRouting, ProbeTarget, probeTargets, Protocol, renderCommand, renderProbeRouting } from '../../model';
import type { CommandRunner } from '../../runtime/probe-routing';
import { synthesizeL3Ipv6Stack, synthesizeL3Stack, urlHost } from './deploy';
import type { VmHostName } from './guest';
import type { VmInventory, VmLab } from './vm-lab';

export interface L3ProbePlan {
  readonly targets: readonly ProbeTarget[];
  /** Each target's source port, by target key. */
  readonly ports: ReadonlyMap<string, number>;
  readonly routing: ProbeRouting;
}

/**
 * What the runtime would probe and install for the L3 stack with these checks: the stack is synthesized with the real
 * constructs into a temp folder and the balancer's spec read back the way the agent reads it.
 */
export function planL3Probes(inv: VmInventory, healthChecks: { readonly web?: HealthCheck; readonly dns?: HealthCheck }, family: 4 | 6 = 4): L3ProbePlan {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-l3-probes-'));
  try {
    const stackDir = (family === 6 ? synthesizeL3Ipv6Stack : synthesizeL3Stack)(path.join(dir, 'cdktf.out'), inv, { healthChecks });
    const host = readStackHosts(stackDir).find((h) => h.kind === 'balancer');
    if (!host) throw new Error(`no balancer in the synthesized stack ${stackDir}`);
    const spec = parseHostSpec(host.specText) as BalancerSpec;
    const targets = probeTargets(spec);
    const ports = assignProbePorts(targets);
    return { targets, ports, routing: renderProbeRouting(spec, targets, ports) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The runtime's command runner, on the balancer over SSH (argv quoted once, input on stdin). */
export function balancerRunner(lab: VmLab): CommandRunner {
  return async (argv, input) => {
    const r = await lab.exec('lb', renderCommand(argv), input === undefined ? {} : { stdin: input });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  };
}

export interface SocatProbe {
  readonly ip: string;
  readonly port: number;
  readonly protocol: Protocol;
  /** The probe port of the target; without it, an ordinary connection from an ephemeral port. */
  readonly sourcePort?: number;
  /** @default 4 */
  readonly timeoutSec?: number;
}

/** What a probe sent `ping\n` and got back: socat's exit code, the reply and socat's complaint. */
export interface SocatProbeResult {
  readonly code: number;
  readonly reply: string;
  readonly error: string;
}

/**
 * One probe from the balancer with socat: `ping\n` out, whatever comes back. TCP never sends the first FIN (shut-none:
 * the server closes first) and closes with a reset (linger 0), as the runtime's probe does, so the fixed source port
 * is free again at once instead of after a minute of TIME_WAIT.
 */
export async function socatProbe(lab: VmLab, p: SocatProbe): Promise<SocatProbeResult> {
  const t = p.timeoutSec ?? 4;
  const source = p.sourcePort === undefined ? '' : `,sourceport=${p.sourcePort}`;
  const v = p.ip.includes(':') ? '6' : '4';
  const target = `${urlHost(p.ip)}:${p.port}`;
  const address = p.protocol === 'tcp' ? `TCP${v}:${target},connect-timeout=${t},linger=0,shut-none${source}` : `UDP${v}:${target}${source}`;
  const r = await lab.exec('lb', `echo ping | timeout ${t * 2} ${renderCommand(['socat', '-t', String(t), '-T', String(t), '-', address])}`);
  return { code: r.code, reply: r.stdout.trim(), error: r.stderr.trim() };
}

/**
 * Starts a TCP server bound to the VIP only on a backend, answering `<host> got <first line>`; resolves with its
 * PID (every lab host shares the VM's PID namespace, so any host can stop it).
 */
export async function startVipOnlyServer(lab: VmLab, host: VmHostName, vip: string, port: number): Promise<number> {
  const reply = `read l; echo ${host} got "$l"`;
  const ipv6 = vip.includes(':');
  const cmd = renderCommand(['socat', `TCP${ipv6 ? 6 : 4}-LISTEN:${port},bind=${urlHost(vip)},fork,reuseaddr`, `SYSTEM:${reply}`]);
  // setsid: the server outlives the SSH session that starts it
  const pid = Number((await lab.execOk(host, `setsid ${cmd} </dev/null >/dev/null 2>&1 & echo $!`)).trim());
  // wait until it listens (up to 5 s under emulation)
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const listening = ipv6 ? `:${hex} ${'0'.repeat(32)}:0000 0A" /proc/net/tcp6` : `:${hex} 00000000:0000 0A" /proc/net/tcp`;
  await lab.execOk(host, `i=0; until grep -q "${listening}; do i=$((i + 1)); [ $i -lt 100 ] || exit 1; usleep 50000; done`);
  return pid;
}

/** The balancer's count of packets its reverse path filter dropped (TcpExt IPReversePathFilter). */
export async function reversePathDrops(lab: VmLab): Promise<number> {
  const out = await lab.execOk('lb', 'cat /proc/net/netstat');
  const [names, values] = out.split('\n').filter((l) => l.startsWith('TcpExt:'));
  const i = names.split(/\s+/).indexOf('IPReversePathFilter');
  if (i < 0 || !values) throw new Error(`no IPReversePathFilter in the balancer's /proc/net/netstat:\n${out}`);
  return Number(values.split(/\s+/)[i]);
}

/** Packets sent into a balancer tunnel (its TX count). */
export async function tunnelTxPackets(lab: VmLab, tunnel: string): Promise<number> {
  const [link] = JSON.parse(await lab.execOk('lb', `ip -s -j link show dev ${renderCommand([tunnel])}`)) as { stats64: { tx: { packets: number } } }[];
  return link.stats64.tx.packets;
}
