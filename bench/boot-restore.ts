/**
 * How long a boot script takes to put a host's VIP addresses back after a reboot: the address lines of the boot
 * script as the model renders them (one `ip -batch` fed a line per address) against one `ip addr replace` per
 * address (the form before), alternated, each in a fresh network namespace with only `lo` up. Needs root.
 *
 *   node dist/bench/boot-restore.js [ADDRESSES] [ROUNDS]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostAddress, addressArgs, addressRestoreCommands, formatIpv4 } from '../model';
import { renderCommand } from '../model/shell';
import { Stat, stat } from './stats';

export interface BootRestore {
  readonly addresses: number;
  readonly batchMs: Stat;
  readonly perAddressMs: Stat;
}

/** The two forms of the address lines of a boot script, as scripts of their own. */
export function bootRestoreScripts(count: number): { batch: string; perAddress: string } {
  const addresses: HostAddress[] = Array.from({ length: count }, (_, i) => ({ ip: formatIpv4(0x0a400000 + i), prefix: 32, dev: 'lo' }));
  return {
    batch: ['set -eu', ...addressRestoreCommands(addresses)].join('\n') + '\n',
    perAddress: ['set -eu', ...addresses.map((a) => renderCommand(['ip', 'addr', 'replace', ...addressArgs(a)]))].join('\n') + '\n',
  };
}

/** Runs the script in a fresh namespace; returns its wall time after checking every address is on lo. */
function timeInNamespace(ns: string, scriptFile: string, count: number): number {
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const t0 = process.hrtime.bigint();
    execFileSync('ip', ['netns', 'exec', ns, 'sh', scriptFile]);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const present = execFileSync('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'lo'], { encoding: 'utf8', maxBuffer: 1 << 26 })
      .split('\n')
      .filter((l) => / 10\.64\./.test(l)).length;
    if (present !== count) throw new Error(`boot-restore: ${present} of ${count} addresses on lo after the script`);
    return ms;
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

export function measureBootRestore(count: number, rounds: number, log: (line: string) => void = () => undefined): BootRestore {
  const scripts = bootRestoreScripts(count);
  const dir = mkdtempSync(join(tmpdir(), 'tula-boot-restore-'));
  const ns = `tula-bootbench-${process.pid}`;
  const batch: number[] = [];
  const perAddress: number[] = [];
  try {
    const files = { batch: join(dir, 'batch.sh'), perAddress: join(dir, 'per-address.sh') };
    writeFileSync(files.batch, scripts.batch);
    writeFileSync(files.perAddress, scripts.perAddress);
    for (let r = 0; r < rounds; r++) {
      // alternate which form goes first, so that a machine that slows down does not favour one
      const forms = r % 2 === 0 ? (['batch', 'perAddress'] as const) : (['perAddress', 'batch'] as const);
      for (const form of forms) {
        const ms = timeInNamespace(ns, files[form], count);
        (form === 'batch' ? batch : perAddress).push(ms);
        log(`boot restore ${count} addresses, round ${r + 1}: ${form} ${ms.toFixed(0)} ms`);
      }
    }
    return { addresses: count, batchMs: stat(batch), perAddressMs: stat(perAddress) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  if (process.getuid?.() !== 0) {
    process.stderr.write('boot-restore: needs root (it creates network namespaces)\n');
    process.exit(1);
  }
  const count = Number(process.argv[2] ?? 10000);
  const rounds = Number(process.argv[3] ?? 3);
  try {
    process.stdout.write(JSON.stringify(measureBootRestore(count, rounds, (l) => process.stderr.write(`${l}\n`))) + '\n');
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}
