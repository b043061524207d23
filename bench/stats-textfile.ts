import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeState, buildStatsSnapshot, groupPools, parseSampleOutput, renderSampleScript } from '../model';
import { runCommand } from '../runtime/nft';
import { StatsWriter } from '../runtime/stats-writer';
import { writeStatsTextfile } from '../runtime/textfile';
import { renderScaleRuleset, scaleSpec } from './nft-scale';
import { Stat, fmt, stat, timeMs, timeMsAsync } from './stats';

/**
 * What one write of the statistics textfile costs the balancer runtime, at a few table sizes: the runtime's own
 * StatsWriter.writeOnce on a real table (in a namespace of its own, with a veth named eth0), and its parts: the sample
 * script (sh, nft's listing), parsing, building the snapshot, rendering and writing the file. Run as root:
 * `node dist/bench/stats-textfile.js [VIPS...]` (default 100 1000 10000), 4 backends per VIP, no open flows.
 */
interface Figures {
  readonly writeOnce: Stat;
  readonly sample: Stat;
  readonly parse: Stat;
  readonly snapshot: Stat;
  readonly write: Stat;
  /** CPU of the runtime's own process per write. */
  readonly runtimeCpu: Stat;
  /** CPU of the sample script's processes per write (sh, nft, date, cat), 10 ms resolution. */
  readonly childrenCpu: Stat;
  readonly bytes: number;
}

/** CPU time of this process's waited-for children (cutime + cstime of /proc/self/stat), in ms. */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // from the 3rd field (after the command name in parentheses) on: cutime and cstime are the 16th and 17th, in 1/100 s
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

export async function measureStatsTextfile(counts: readonly number[], runs = 5): Promise<Record<number, Figures>> {
  const ns = `tula-bench-tf-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'tula-textfile-bench-'));
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  const inNs: typeof runCommand = (argv, input) => runCommand(['ip', 'netns', 'exec', ns, ...argv], input, 60_000);
  ip('netns', 'add', ns);
  try {
    ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    const result: Record<number, Figures> = {};
    for (const count of counts) {
      const spec = scaleSpec(count);
      const file = join(dir, `r${count}.nft`);
      writeFileSync(file, renderScaleRuleset(count));
      execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', file], { stdio: 'pipe' });
      const pools = groupPools(spec.vips);
      const path = join(dir, `tula_dsr_${count}.prom`);
      // what the runtime's view holds on a balancer that checks nothing: the snapshot reads it, finds no check
      const now = Math.floor(Date.now() / 1000);
      const state: RuntimeState = { version: 1, config: '0'.repeat(64), pid: process.pid, startedAt: now, updatedAt: now, checks: [], pools: [], active: {} };
      const writer = new StatsWriter(() => ({ spec, pools, state: () => state }), {
        log: (level, message) => process.stderr.write(`stats-textfile bench: ${level}: ${message}\n`),
        run: inNs,
      });
      const f = {
        writeOnce: [] as number[],
        sample: [] as number[],
        parse: [] as number[],
        snapshot: [] as number[],
        write: [] as number[],
        cpu: [] as number[],
        children: [] as number[],
      };
      await writer.configure({ path, intervalSec: 3600 });
      for (let r = 0; r < runs; r++) {
        const cpu = process.cpuUsage();
        const children = childrenCpuMs();
        const whole = await timeMsAsync(() => writer.writeOnce());
        const used = process.cpuUsage(cpu);
        f.children.push(childrenCpuMs() - children);
        if (!whole.value) throw new Error(`writeOnce failed at ${count} VIPs`);
        f.writeOnce.push(whole.ms);
        f.cpu.push((used.user + used.system) / 1000);
        const sampled = await timeMsAsync(() => inNs(['sh', '-c', renderSampleScript()]));
        f.sample.push(sampled.ms);
        const parsed = timeMs(() => parseSampleOutput(sampled.value.stdout));
        f.parse.push(parsed.ms);
        const snapshot = timeMs(() => buildStatsSnapshot({ spec, pools, ...parsed.value, runtime: state }));
        f.snapshot.push(snapshot.ms);
        f.write.push(timeMs(() => writeStatsTextfile(snapshot.value, path)).ms);
      }
      writer.stop();
      result[count] = {
        writeOnce: stat(f.writeOnce),
        sample: stat(f.sample),
        parse: stat(f.parse),
        snapshot: stat(f.snapshot),
        write: stat(f.write),
        runtimeCpu: stat(f.cpu),
        childrenCpu: stat(f.children),
        bytes: statSync(path).size,
      };
      execFileSync('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'netdev', 'tula_dsr'], { stdio: 'pipe' });
    }
    return result;
  } finally {
    ip('netns', 'del', ns);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const counts = process.argv.slice(2).map(Number);
  measureStatsTextfile(counts.length ? counts : [100, 1000, 10000])
    .then((result) => {
      const ms = (s: Stat) => fmt(s, 'ms', 0);
      for (const [count, f] of Object.entries(result)) {
        process.stdout.write(
          [
            `${count} VIPs × 4 backends: one write ${ms(f.writeOnce)}, CPU: runtime ${ms(f.runtimeCpu)}, sample script ${ms(f.childrenCpu)}; file ${(f.bytes / 1024).toFixed(0)} KiB`,
            `  sample (sh + nft) ${ms(f.sample)}; parse ${ms(f.parse)}; snapshot ${ms(f.snapshot)}; render + write ${ms(f.write)}`,
            '',
          ].join('\n'),
        );
      }
    })
    .catch((error: Error) => {
      process.stderr.write(`stats-textfile bench: ${error.message}\n`);
      process.exit(1);
    });
}
