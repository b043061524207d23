/**
 * A scratch network namespace holding a balancer table, for runtime tests that drive the real nft: `eth0` (one end of
 * a veth, up), the table loaded as a first apply loads it, and a host lock file of its own.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface BalancerNetns {
  readonly name: string;
  /** The prefix that runs a command inside the namespace. */
  readonly exec: readonly string[];
  readonly lockFile: string;
  /** `nft ARGS…` inside the namespace; throws on a non-zero exit. */
  nft(...args: string[]): string;
  /** Loads an nft file into the namespace. */
  load(ruleset: string): void;
  remove(): void;
}

export function sh(argv: readonly string[], input?: string): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

export function createBalancerNetns(suffix: string): BalancerNetns {
  const name = `tula-t-${randomBytes(4).toString('hex')}-${suffix}`;
  const lockDir = mkdtempSync(path.join(os.tmpdir(), `tula-${suffix}-`));
  const exec = ['ip', 'netns', 'exec', name];
  sh(['ip', 'netns', 'add', name]);
  sh(['ip', '-n', name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
  sh(['ip', '-n', name, 'link', 'set', 'eth0', 'up']);
  return {
    name,
    exec,
    lockFile: path.join(lockDir, 'lock'),
    nft: (...args) => sh([...exec, 'nft', ...args]),
    load: (ruleset) => void sh([...exec, 'nft', '-f', '-'], ruleset),
    remove: () => {
      spawnSync('ip', ['netns', 'del', name]);
      rmSync(lockDir, { recursive: true, force: true });
    },
  };
}
