import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join, resolve } from 'node:path';
import { METHODS, Method, measureConvergence } from './converge';
import { remapFractions } from './maglev-remap';
import { measureNftLoad } from './nft-scale';
import { GoalRow, Stat, fmt, renderTable, stat } from './stats';

/**
 * `npm run bench`: every figure of BENCHMARKS.md, measured side by side in one run on this machine, with each goal
 * marked PASS or MISS. Run as root (namespaces, nft, sshd). `--quick` uses fewer hosts and runs (a smoke test).
 */
const REPO = resolve(__dirname, '..', '..');
const quick = process.argv.includes('--quick');
const rows: GoalRow[] = [];
const notes: string[] = [];
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
const ms = (s: Stat) => fmt(s, 'ms', 0);

function synthRuns(which: 'dsr' | 'bare', runs: number): { time: Stat; rss: Stat } {
  const time: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < runs; i++) {
    const out = execFileSync('node', ['--expose-gc', join(REPO, 'dist', 'bench', 'synth-scale.js'), which], { encoding: 'utf8' });
    const r = JSON.parse(out) as { ms: number; peakRssMb: number };
    time.push(r.ms);
    rss.push(r.peakRssMb);
  }
  return { time: stat(time), rss: stat(rss) };
}

async function convergenceSection(): Promise<void> {
  const hosts = quick ? 4 : 20;
  const runs = quick ? 1 : 3;
  log(`convergence: ${hosts} backend hosts, ${runs} rounds of A B C T D (cold, then no-op)`);
  const r = await measureConvergence(hosts, runs);
  notes.push(`Convergence (${hosts} hosts, ${r.ansibleVersion}), median (min–max) over ${runs} runs:`, '', '| method | cold | no-op |', '|---|---|---|');
  for (const m of Object.keys(METHODS) as Method[]) notes.push(`| ${m}: ${METHODS[m]} | ${ms(r.cold[m])} | ${ms(r.noop[m])} |`);
  notes.push('', 'T no-op is `terraform apply` with an unchanged configuration: Terraform finds nothing to do and runs no provisioner.', '');
  for (const phase of ['cold', 'noop'] as const) {
    const x = r[phase];
    const ratio = (a: Method, b: Method) => x[a].median / x[b].median;
    rows.push({ section: `convergence ${phase}`, goal: 'D ≤ 1.3 × C', measured: `${ratio('D', 'C').toFixed(2)} × (D ${x.D.median.toFixed(0)} ms, C ${x.C.median.toFixed(0)} ms)`, pass: ratio('D', 'C') <= 1.3 });
    rows.push({ section: `convergence ${phase}`, goal: 'T ≤ 2 × C', measured: `${ratio('T', 'C').toFixed(2)} × (T ${x.T.median.toFixed(0)} ms)`, pass: ratio('T', 'C') <= 2 });
    rows.push({ section: `convergence ${phase}`, goal: 'T ≥ 3× faster than B', measured: `${ratio('B', 'T').toFixed(1)} × (B ${x.B.median.toFixed(0)} ms)`, pass: ratio('B', 'T') >= 3 });
    rows.push({ section: `convergence ${phase}`, goal: 'T ≥ 6× faster than A', measured: `${ratio('A', 'T').toFixed(1)} × (A ${x.A.median.toFixed(0)} ms)`, pass: ratio('A', 'T') >= 6 });
  }
}

function dataPlaneSection(): void {
  log('data plane: nft load of 1, 1,000 and 10,000 VIPs × 4 backends');
  const load = measureNftLoad([1, 1000, 10000], quick ? 1 : 3);
  notes.push('nft load (render + `nft -f` of the in-place reload file into an empty namespace; then a second load of the same file):', '', '| VIPs × 4 backends | render | first load | reload |', '|---|---|---|---|');
  for (const [count, r] of Object.entries(load)) notes.push(`| ${count} | ${ms(r.render)} | ${ms(r.load)} | ${ms(r.reload)} |`);
  notes.push('');
  const big = load[10000];
  const total = big.render.median + big.load.median;
  rows.push({ section: 'data plane', goal: '10,000 VIPs load ≤ 1 s (render + nft -f)', measured: `${(total / 1000).toFixed(2)} s`, pass: total <= 1000 });
  const remap = remapFractions(10);
  rows.push({ section: 'data plane', goal: 'consistent hash: remove 1 of 10 remaps ≤ 15%', measured: `${(remap.maglevRemove * 100).toFixed(1)}% (mod-N ${(remap.modRemove * 100).toFixed(1)}%)`, pass: remap.maglevRemove <= 0.15 });
  rows.push({ section: 'data plane', goal: 'consistent hash: add 1 to 10 remaps ≤ 15%', measured: `${(remap.maglevAdd * 100).toFixed(1)}% (mod-N ${(remap.modAdd * 100).toFixed(1)}%)`, pass: remap.maglevAdd <= 0.15 });
}

function synthSection(): void {
  const runs = quick ? 1 : 3;
  log('synth: 1,000 VIPs × 10 backends against 11,000 bare null_resources');
  const dsr: { time: number[]; rss: number[] } = { time: [], rss: [] };
  const bare: { time: number[]; rss: number[] } = { time: [], rss: [] };
  for (let i = 0; i < runs; i++) {
    for (const [which, into] of [['dsr', dsr], ['bare', bare]] as const) {
      const r = synthRuns(which, 1);
      into.time.push(r.time.median);
      into.rss.push(r.rss.median);
    }
  }
  const d = stat(dsr.time);
  const b = stat(bare.time);
  notes.push(`Synth in-process (fresh Node per run): 1,000 VIPs × 10 backends ${ms(d)}, peak RSS ${stat(dsr.rss).median.toFixed(0)} MB; 11,000 bare null_resources ${ms(b)}, peak RSS ${stat(bare.rss).median.toFixed(0)} MB.`, '');
  rows.push({ section: 'synth', goal: '1,000 VIPs × 10 backends ≤ 2 s', measured: `${(d.median / 1000).toFixed(2)} s`, pass: d.median <= 2000 });
  rows.push({ section: 'synth', goal: '≤ 1.5 × bare null_resources (time)', measured: `${(d.median / b.median).toFixed(2)} ×`, pass: d.median / b.median <= 1.5 });
  rows.push({ section: 'synth', goal: '≤ 1.5 × bare null_resources (peak memory)', measured: `${(stat(dsr.rss).median / stat(bare.rss).median).toFixed(2)} ×`, pass: stat(dsr.rss).median / stat(bare.rss).median <= 1.5 });
}

function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} cores (${cpu}), kernel ${release()}, ${new Date().toISOString().slice(0, 10)}`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: needs root (network namespaces, nft, sshd); run as root\n');
    process.exit(1);
  }
  const started = Date.now();
  synthSection();
  dataPlaneSection();
  await convergenceSection();
  const table = renderTable(rows);
  const header = `Measured on ${machine()}${quick ? ' (--quick: fewer hosts and runs)' : ''}, in ${((Date.now() - started) / 1000).toFixed(0)} s.`;
  process.stdout.write(`\n${header}\n\n${table}\n${notes.join('\n')}\n`);
  if (!quick) {
    const file = join(REPO, 'BENCHMARKS.md');
    const intro = readFileSync(file, 'utf8').split('<!-- results -->')[0];
    writeFileSync(file, `${intro}<!-- results -->\n${header}\n\n${table}\n${notes.join('\n')}\n`);
    log('BENCHMARKS.md updated');
  }
}

main().catch((error) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
