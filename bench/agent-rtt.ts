/**
 * Agent round trips and wall time against a real sshd in a lab namespace, against the goals below:
 *  - cold apply of one backend host (a `remove` before each run puts the host back to fresh, untimed),
 *  - no-op apply of the same spec,
 *  - one plain system `ssh host true` with the same key and host key checking, as the yardstick.
 * Wall times cover everything the CLI pays per host except node's start-up: connect with host key verification,
 * facts, apply, close. Round trips are exec channels after the connection is set up.
 * Goals: no-op ≤ 2 and cold ≤ 3 round trips; cold apply within 2× of `ssh host true`.
 *
 * The same cold and no-op applies are also timed through the CLI (the `tula-dsr` bin: `node dist/agent/tula-dsr.js apply --spec FILE`), as
 * an operator or a provisioner runs it: that adds node's start-up and module loading.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createLab } from '../lab/topology';
import { execFile } from '../lab/exec';
import { runHost } from '../agent/runner';

export interface Stats {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export interface AgentRttResult {
  readonly runs: number;
  readonly coldApplyMs: Stats;
  readonly coldApplyRoundTrips: Stats;
  readonly noopApplyMs: Stats;
  readonly noopApplyRoundTrips: Stats;
  readonly sshTrueMs: Stats;
  /** The CLI end to end (node start-up included). */
  readonly cliColdApplyMs: Stats;
  readonly cliNoopApplyMs: Stats;
  /** median CLI cold apply / median `ssh host true`. */
  readonly cliColdVsSshTrue: number;
  /** median cold apply / median `ssh host true`; the goal is ≤ 2. */
  readonly coldVsSshTrue: number;
}

export function stats(values: readonly number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median: round(median), min: round(sorted[0]), max: round(sorted[sorted.length - 1]) };
}

const round = (n: number) => Math.round(n * 10) / 10;
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** Measures `runs` cold applies, `runs` no-op applies and `runs` plain `ssh host true` on a fresh one-host lab. */
export async function benchAgentRtt(runs = 10): Promise<AgentRttResult> {
  const lab = await createLab({ hosts: [{ name: 'be1' }] });
  const dir = mkdtempSync(join(tmpdir(), 'tula-agent-rtt-'));
  try {
    const be = lab.hosts.be1;
    const spec = JSON.stringify({
      kind: 'backend',
      path: 'bench/be1',
      name: 'be1',
      ssh: { host: be.ip, port: 22, user: 'root', privateKeyPath: lab.clientKeyPath, hostKey: be.hostKeyFingerprint },
      services: [
        { path: 'bench/web/be1', ip: '10.99.250.10', port: 80, protocol: 'tcp', mode: 'l2' },
        { path: 'bench/api/be1', ip: '10.99.250.11', port: 443, protocol: 'tcp', mode: 'l2' },
      ],
    });
    const timed = async (mode: 'apply' | 'remove') => {
      const t = now();
      const r = await runHost(spec, mode);
      const ms = now() - t;
      if (r.error) throw new Error(`${mode} failed: ${r.error.message}`);
      return { ms, roundTrips: r.roundTrips, changed: r.counts.changed };
    };
    const sshTrue = async () => {
      const t = now();
      const r = await execFile([...be.sshArgv(), 'true']);
      const ms = now() - t;
      if (r.code !== 0) throw new Error(`ssh true failed: ${r.stderr}`);
      return ms;
    };

    const specFile = join(dir, 'be1.json');
    writeFileSync(specFile, spec);
    const cli = async () => {
      const t = now();
      const r = await execFile([process.execPath, join(resolve(__dirname, '..', '..'), 'dist', 'agent', 'tula-dsr.js'), 'apply', '--spec', specFile, '--json']);
      const ms = now() - t;
      if (r.code !== 0) throw new Error(`tula-dsr apply --spec failed (exit ${r.code}): ${r.stderr}`);
      const changed = (JSON.parse(r.stdout) as { results: { counts: { changed: number } }[] }).results[0].counts.changed;
      return { ms, changed };
    };

    // warm-up: caches, sshd's first fork, node's JIT
    await timed('apply');
    await timed('remove');
    await sshTrue();

    const cold: { ms: number; roundTrips: number }[] = [];
    const noop: { ms: number; roundTrips: number }[] = [];
    const ssh: number[] = [];
    for (let i = 0; i < runs; i++) {
      const c = await timed('apply');
      if (c.changed === 0) throw new Error('a cold apply changed nothing: the host was not reset');
      cold.push(c);
      const n = await timed('apply');
      if (n.changed !== 0) throw new Error(`a no-op apply changed ${n.changed} task(s)`);
      noop.push(n);
      ssh.push(await sshTrue());
      await timed('remove');
    }
    const cliCold: number[] = [];
    const cliNoop: number[] = [];
    for (let i = 0; i < runs; i++) {
      const c = await cli();
      if (c.changed === 0) throw new Error('a cold CLI apply changed nothing: the host was not reset');
      cliCold.push(c.ms);
      const n = await cli();
      if (n.changed !== 0) throw new Error(`a no-op CLI apply changed ${n.changed} task(s)`);
      cliNoop.push(n.ms);
      await timed('remove');
    }
    const coldApplyMs = stats(cold.map((c) => c.ms));
    const sshTrueMs = stats(ssh);
    return {
      runs,
      coldApplyMs,
      coldApplyRoundTrips: stats(cold.map((c) => c.roundTrips)),
      noopApplyMs: stats(noop.map((n) => n.ms)),
      noopApplyRoundTrips: stats(noop.map((n) => n.roundTrips)),
      sshTrueMs,
      coldVsSshTrue: round(coldApplyMs.median / sshTrueMs.median),
      cliColdApplyMs: stats(cliCold),
      cliNoopApplyMs: stats(cliNoop),
      cliColdVsSshTrue: round(stats(cliCold).median / sshTrueMs.median),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await lab.teardown();
  }
}

if (require.main === module) {
  benchAgentRtt(Number(process.argv[2] ?? 10)).then(
    (r) => process.stdout.write(JSON.stringify(r, null, 2) + '\n'),
    (e) => {
      process.stderr.write(`agent-rtt: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
