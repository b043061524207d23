import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { App, LocalBackend, TerraformStack } from 'cdktf';
import { Balancer, BackendHost, DsrVip } from '../constructs';
import { RUNTIME_DIR_ENV } from '../agent/daemon/paths';
import { readStackHosts } from '../agent/spec-input';
import { stopAgentDaemons } from '../lab/agent-daemons';
import { agentRuntimeDir } from '../lab/l2/deploy';
import { createLab, Lab, LabHost } from '../lab/topology';
import { ensureAnsible, parseAnsibleRecap, renderInventory, renderPlaybook } from './ansible';
import { CgroupCpu, cgroupCpu, reapStaleGroups } from './cgroup-cpu';
import { addCpu, Cpu, cpuTotal, daemonCpu, daemonCpuSince, NO_CPU, runCounted } from './cpu';
import { Stat, stat } from './stats';

/**
 * Convergence of N backend hosts to what a DSR backend needs (arp_ignore=1 and arp_announce=2 at runtime and in a
 * sysctl.d file, the VIP on lo), measured side by side: Ansible at defaults (A) and tuned (B), the floor of one
 * plain ssh per host running a POSIX script (C), tula-dsr through `terraform apply` (T) and tula-dsr applying the
 * synthesized stack directly (D). Every run ends with the state verified on every host.
 */
export type Method = 'A' | 'B' | 'C' | 'T' | 'D';
export const METHODS: Record<Method, string> = {
  A: 'Ansible, defaults (forks 5, facts)',
  B: 'Ansible, tuned (forks = hosts, pipelining, no facts)',
  C: 'plain ssh per host, POSIX script',
  T: 'tula-dsr via terraform apply -parallelism=hosts',
  D: 'tula-dsr apply STACK_DIR',
};

const REPO = resolve(__dirname, '..', '..');
const SYSCTLS = ['net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.all.arp_announce'];

interface RunOutcome {
  readonly ms: number;
  readonly changed: number;
  /** CPU of the processes the method started and waited for (ansible and its ssh, the ssh clients, terraform and its provisioners, the CLI). */
  readonly cpu: Cpu;
  /** CPU the agent daemon spent meanwhile (T only: it is not a child of the run). */
  readonly daemonCpu: Cpu;
  /** CPU the hosts spent meanwhile: their sshds' sessions (key exchange, the shell, the scripts' commands); null where it cannot be counted. */
  readonly hostsCpu: Cpu | null;
}

function run(argv: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => done({ code: code ?? 1, out }));
  });
}

/**
 * Times `fn` and reads what it cost. `settle` runs after the clock stops and before the hosts' CPU is read: what a
 * method leaves running (Ansible's ssh control masters keep their connections for a minute) would otherwise be counted
 * when its sessions end, in another method's run.
 */
async function timed(s: ConvergenceSetup, fn: () => Promise<{ changed: number; cpu: Cpu }>, settle?: () => void): Promise<RunOutcome> {
  const hosts = 'read' in s.hostsCpu ? s.hostsCpu : null;
  const daemonBefore = daemonCpu(s.daemonDir);
  const hostsBefore = hosts?.read();
  const start = process.hrtime.bigint();
  const { changed, cpu } = await fn();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const daemon = daemonCpuSince(daemonBefore, daemonCpu(s.daemonDir));
  settle?.();
  let hostsCpu: Cpu | null = null;
  if (hosts && hostsBefore) {
    await hosts.settled(s.sshdPids);
    const after = hosts.read();
    hostsCpu = { userMs: after.userMs - hostsBefore.userMs, systemMs: after.systemMs - hostsBefore.systemMs };
  }
  return { ms, changed, cpu, daemonCpu: daemon, hostsCpu };
}

function floorScript(vip: string): string {
  const file = '/etc/sysctl.d/99-dsr.conf';
  const want = 'net.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\n';
  return [
    'c=0',
    `if [ "$(cat ${file} 2>/dev/null)" != "$(printf '${want.replace(/\n/g, '\\n')}')" ]; then printf '${want.replace(/\n/g, '\\n')}' > ${file}.tmp && mv ${file}.tmp ${file}; c=$((c+1)); fi`,
    `[ "$(sysctl -n net.ipv4.conf.all.arp_ignore)" = 1 ] || { sysctl -q -w net.ipv4.conf.all.arp_ignore=1; c=$((c+1)); }`,
    `[ "$(sysctl -n net.ipv4.conf.all.arp_announce)" = 2 ] || { sysctl -q -w net.ipv4.conf.all.arp_announce=2; c=$((c+1)); }`,
    `ip -o addr show dev lo | grep -q ' ${vip}/32' || { ip addr add ${vip}/32 dev lo; c=$((c+1)); }`,
    'echo "changed=$c"',
  ].join('\n');
}

export interface ConvergenceSetup {
  readonly lab: Lab;
  readonly hosts: LabHost[];
  readonly vip: string;
  readonly work: string;
  readonly stackDir: string;
  /** Terraform addresses of the backend hosts' resources (T converges only those, as A, B, C and D do). */
  readonly backendResources: string[];
  readonly ansibleEnv: NodeJS.ProcessEnv;
  readonly tfEnv: NodeJS.ProcessEnv;
  /** The agent daemon's folder for T (stopped before each cold run, so that T pays the daemon's start-up). */
  readonly daemonDir: string;
  readonly ansibleVersion: string;
  /** The hosts' listening sshds, and the cgroup that counts the CPU of their sessions (or why there is none). */
  readonly sshdPids: number[];
  readonly hostsCpu: CgroupCpu | { problem: string };
  teardown(): Promise<void>;
}

/** The cgroup counting the lab hosts' CPU, then the bench's pid. */
const HOSTS_CGROUP_PREFIX = 'tula-bench-hosts-';

export async function setupConvergence(count: number, cacheDir: string): Promise<ConvergenceSetup> {
  const { collectionsPath, version } = ensureAnsible(cacheDir);
  const names = Array.from({ length: count }, (_, i) => `be${String(i + 1).padStart(2, '0')}`);
  const lab = await createLab({ hosts: names.map((name) => ({ name })) });
  const work = mkdtempSync(join(tmpdir(), 'tula-converge-'));
  const sshdPids = names.map((n) => lab.hosts[n].sshdPid()).filter((pid): pid is number => pid !== undefined);
  reapStaleGroups(HOSTS_CGROUP_PREFIX);
  const hostsCpu = cgroupCpu(`${HOSTS_CGROUP_PREFIX}${process.pid}`, sshdPids);
  if ('problem' in hostsCpu) process.stderr.write(`bench: the hosts' CPU is not counted: ${hostsCpu.problem}\n`);
  const removeCgroup = () => ('remove' in hostsCpu ? hostsCpu.remove() : undefined);
  try {
    const hosts = names.map((n) => lab.hosts[n]);
    const vip = lab.subnet.replace(/\.0\/24$/, '.200');
    writeFileSync(
      join(work, 'inventory.ini'),
      renderInventory(
        hosts.map((h) => ({ name: h.name, ip: h.ip })),
        lab.clientKeyPath,
        lab.knownHostsPath,
      ),
    );
    writeFileSync(join(work, 'play-defaults.yml'), renderPlaybook(vip, true));
    writeFileSync(join(work, 'play-tuned.yml'), renderPlaybook(vip, false));
    // Node resolves `tula-dsr/agent` from the stack folder upwards: give the temp tree a node_modules link.
    mkdirSync(join(work, 'node_modules'));
    symlinkSync(REPO, join(work, 'node_modules', 'tula-dsr'));
    const app = new App({ outdir: join(work, 'out'), context: { 'tula-dsr:engine': 'terraform_data' } });
    const stack = new TerraformStack(app, 'converge');
    new LocalBackend(stack, { path: 'terraform.tfstate' }); // in the stack folder, never the repository
    const key = { privateKeyPath: lab.clientKeyPath };
    // The balancer is in the stack because backends belong to a VIP; T and D converge only the backend hosts.
    const lb = new Balancer(stack, 'lb', {
      ssh: { host: lab.subnet.replace(/\.0\/24$/, '.250'), hostKey: hosts[0].hostKeyFingerprint, ...key },
      interface: 'eth0',
    });
    const dsr = new DsrVip(stack, 'web', { balancer: lb, ip: vip, port: 80 });
    for (const h of hosts) dsr.addBackend(h.name, { host: new BackendHost(stack, h.name, { ssh: { host: h.ip, hostKey: h.hostKeyFingerprint, ...key } }) });
    app.synth();
    const stackDir = join(work, 'out', 'stacks', 'converge');
    const backendResources = readStackHosts(stackDir)
      .filter((h) => h.kind === 'backend')
      .map((h) => h.address);
    const cli = join(work, 'terraform.tfrc');
    writeFileSync(cli, '');
    const daemonDir = agentRuntimeDir(work);
    const tfEnv = { ...process.env, TF_CLI_CONFIG_FILE: cli, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1', [RUNTIME_DIR_ENV]: daemonDir };
    const init = await run(['terraform', 'init', '-input=false', '-no-color'], { cwd: stackDir, env: tfEnv });
    if (init.code !== 0) throw new Error(`terraform init failed:\n${init.out}`);
    const ansibleEnv = {
      ...process.env,
      ANSIBLE_COLLECTIONS_PATH: collectionsPath,
      ANSIBLE_NOCOLOR: '1',
      ANSIBLE_RETRY_FILES_ENABLED: 'False',
      ANSIBLE_HOST_KEY_CHECKING: 'True',
      ANSIBLE_PYTHON_INTERPRETER: '/usr/bin/python3',
    };
    return {
      lab,
      hosts,
      vip,
      work,
      stackDir,
      backendResources,
      ansibleEnv,
      tfEnv,
      daemonDir,
      ansibleVersion: version,
      sshdPids,
      hostsCpu,
      teardown: async () => {
        await stopAgentDaemons(daemonDir);
        await lab.teardown();
        removeCgroup();
        rmSync(work, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await lab.teardown();
    removeCgroup();
    rmSync(work, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Puts every host back to a blank state, forgets terraform's state (so that T provisions again) and stops the
 * agent daemon (so that a cold T starts it, as a user's first apply does).
 */
export async function resetHosts(s: ConvergenceSetup): Promise<void> {
  await stopAgentDaemons(s.daemonDir);
  await Promise.all(
    s.hosts.map((h) =>
      h.exec(
        `rm -rf /etc/sysctl.d/99-dsr.conf /etc/sysctl.d/99-tula-dsr.conf /etc/tula-dsr /var/lib/tula-dsr /etc/systemd/system/tula-dsr-backend.service; sysctl -q -w ${SYSCTLS.map((k) => `${k}=0`).join(' ')}; ip addr del ${s.vip}/32 dev lo 2>/dev/null; true`,
      ),
    ),
  );
  rmSync(join(s.stackDir, 'terraform.tfstate'), { force: true });
  rmSync(join(s.stackDir, 'terraform.tfstate.backup'), { force: true });
}

/** Every host has the runtime sysctls, a sysctl.d file holding them, and the VIP on lo. */
export async function verifyHosts(s: ConvergenceSetup): Promise<void> {
  const problems: string[] = [];
  await Promise.all(
    s.hosts.map(async (h) => {
      const r = await h.exec(
        `sysctl -n ${SYSCTLS.join(' ')} | tr '\\n' ' '; grep -lE 'arp_ignore ?= ?1' /etc/sysctl.d/*.conf >/dev/null && echo file; ip -o addr show dev lo | grep -c ' ${s.vip}/32'`,
      );
      if (!/^1 2 file\n1\n?$/.test(r.stdout)) problems.push(`${h.name}: ${JSON.stringify(r.stdout)}`);
    }),
  );
  if (problems.length) throw new Error(`hosts not converged:\n${problems.join('\n')}`);
}

function changedIn(out: string): number {
  return [...out.matchAll(/changed=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** Ends the ssh control masters Ansible left behind in `controlDir` (`ssh -O exit` on each socket), and so their sessions on the hosts. */
function stopControlMasters(controlDir: string): void {
  let sockets: string[];
  try {
    sockets = readdirSync(controlDir);
  } catch {
    return;
  }
  for (const socket of sockets) spawnSync('ssh', ['-o', `ControlPath=${join(controlDir, socket)}`, '-O', 'exit', 'unused'], { stdio: 'ignore', timeout: 5000 });
}

export async function runMethod(s: ConvergenceSetup, method: Method): Promise<RunOutcome> {
  switch (method) {
    case 'A':
    case 'B': {
      const controlDir = mkdtempSync(join(tmpdir(), 'tula-ansible-cp-'));
      try {
        const env = {
          ...s.ansibleEnv,
          ANSIBLE_SSH_CONTROL_PATH_DIR: controlDir,
          ...(method === 'B' ? { ANSIBLE_PIPELINING: 'True', ANSIBLE_FORKS: String(s.hosts.length) } : {}),
        };
        return await timed(
          s,
          async () => {
            const r = await runCounted(
              ['ansible-playbook', '-i', join(s.work, 'inventory.ini'), join(s.work, method === 'A' ? 'play-defaults.yml' : 'play-tuned.yml')],
              { env },
            );
            const recap = parseAnsibleRecap(r.out);
            if (r.code !== 0 || recap.failed) throw new Error(`ansible (${method}) failed:\n${r.out.slice(-3000)}`);
            return { changed: recap.changed, cpu: r.cpu };
          },
          () => stopControlMasters(controlDir),
        );
      } finally {
        stopControlMasters(controlDir);
        rmSync(controlDir, { recursive: true, force: true });
      }
    }
    case 'C':
      return timed(s, async () => {
        const results = await Promise.all(s.hosts.map((h) => runCounted([...h.sshArgv(), floorScript(s.vip)])));
        const bad = results.find((r) => r.code !== 0);
        if (bad) throw new Error(`ssh floor failed: ${bad.out}`);
        return {
          changed: results.reduce((sum, r) => sum + Number(/changed=(\d+)/.exec(r.out)?.[1] ?? 0), 0),
          cpu: results.reduce((sum, r) => addCpu(sum, r.cpu), NO_CPU),
        };
      });
    case 'T':
      return timed(s, async () => {
        const targets = s.backendResources.flatMap((address) => ['-target', address]);
        const r = await runCounted(['terraform', 'apply', '-auto-approve', '-input=false', '-no-color', `-parallelism=${s.hosts.length}`, ...targets], {
          cwd: s.stackDir,
          env: s.tfEnv,
        });
        if (r.code !== 0) throw new Error(`terraform apply failed:\n${r.out.slice(-3000)}`);
        return { changed: changedIn(r.out), cpu: r.cpu };
      });
    case 'D':
      return timed(s, async () => {
        const r = await runCounted(['node', join(REPO, 'dist', 'agent', 'tula-dsr.js'), 'apply', s.stackDir, '--limit', 'backend']);
        if (r.code !== 0) throw new Error(`tula-dsr apply failed:\n${r.out.slice(-3000)}`);
        return { changed: changedIn(r.out), cpu: r.cpu };
      });
  }
}

/** CPU per host (ms), for each method: what its processes used, (T) what the agent daemon used, and what the hosts used. */
export interface CpuPerHost {
  readonly total: Record<Method, Stat>;
  readonly daemon: Record<Method, Stat>;
  readonly hosts: Record<Method, Stat>;
}

export interface ConvergenceResult {
  readonly cold: Record<Method, Stat>;
  readonly noop: Record<Method, Stat>;
  readonly cpu: { readonly cold: CpuPerHost; readonly noop: CpuPerHost };
  /** Every round's wall time (ms), in order, for ratios that must hold in each round. */
  readonly rounds: { readonly cold: Record<Method, number[]>; readonly noop: Record<Method, number[]> };
  readonly ansibleVersion: string;
  readonly hosts: number;
}

/** Rounds interleave the methods (A B C T D, A B C T D, …) so that machine noise spreads evenly. */
export async function measureConvergence(
  count = 20,
  runs = 3,
  cacheDir = join(REPO, '.cache', 'bench'),
  methods: readonly Method[] = ['A', 'B', 'C', 'T', 'D'],
): Promise<ConvergenceResult> {
  const s = await setupConvergence(count, cacheDir);
  const cold: Record<string, number[]> = {};
  const noop: Record<string, number[]> = {};
  const cpu = { cold: { total: {}, daemon: {}, hosts: {} }, noop: { total: {}, daemon: {}, hosts: {} } } as Record<
    'cold' | 'noop',
    Record<keyof CpuPerHost, Record<string, number[]>>
  >;
  const perHost = (phase: 'cold' | 'noop', m: Method, r: RunOutcome) => {
    (cpu[phase].total[m] ??= []).push((cpuTotal(r.cpu) + cpuTotal(r.daemonCpu)) / count);
    (cpu[phase].daemon[m] ??= []).push(cpuTotal(r.daemonCpu) / count);
    if (r.hostsCpu) (cpu[phase].hosts[m] ??= []).push(cpuTotal(r.hostsCpu) / count);
  };
  try {
    for (let round = 0; round < runs; round++) {
      for (const m of methods) {
        await resetHosts(s);
        const first = await runMethod(s, m);
        await verifyHosts(s);
        const second = await runMethod(s, m);
        await verifyHosts(s);
        if (second.changed !== 0) throw new Error(`${m}: the re-run reported changed=${second.changed}, expected 0`);
        if (first.changed === 0 && m !== 'T') throw new Error(`${m}: the cold run reported nothing changed`);
        (cold[m] ??= []).push(first.ms);
        (noop[m] ??= []).push(second.ms);
        perHost('cold', m, first);
        perHost('noop', m, second);
        const cpuNote = (r: RunOutcome) =>
          `CPU ${((cpuTotal(r.cpu) + cpuTotal(r.daemonCpu)) / count).toFixed(1)} ms/host${r.hostsCpu ? `, the hosts ${(cpuTotal(r.hostsCpu) / count).toFixed(1)} ms/host` : ''}`;
        process.stderr.write(
          `bench: convergence round ${round + 1} ${m}: cold ${first.ms.toFixed(0)} ms (${cpuNote(first)}), no-op ${second.ms.toFixed(0)} ms (${cpuNote(second)})\n`,
        );
      }
    }
  } finally {
    await s.teardown();
  }
  const toStats = (x: Record<string, number[]>) => Object.fromEntries(Object.entries(x).map(([k, v]) => [k, stat(v)])) as Record<Method, Stat>;
  const cpuStats = (x: Record<keyof CpuPerHost, Record<string, number[]>>): CpuPerHost => ({
    total: toStats(x.total),
    daemon: toStats(x.daemon),
    hosts: toStats(x.hosts),
  });
  return {
    cold: toStats(cold),
    noop: toStats(noop),
    rounds: { cold: cold as Record<Method, number[]>, noop: noop as Record<Method, number[]> },
    cpu: { cold: cpuStats(cpu.cold), noop: cpuStats(cpu.noop) },
    ansibleVersion: s.ansibleVersion,
    hosts: count,
  };
}
