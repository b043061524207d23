/**
 * What the L3 VM lab tests share: a fresh dist/ check, the host snapshot that proves byte-for-byte restores, and the
 * steps of a suite that boots one VM (a failed step keeps the VM's work folder; later steps fail at once when the
 * deployment failed, instead of each waiting for traffic that cannot flow).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../../lab/vm/paths';
import type { RunResult } from '../../lab/vm/deploy';
import type { VmLab } from '../../lab/vm/vm-lab';

/** Everything tula-dsr may touch on a host, as text: nft ruleset, addresses, routes, net sysctls, /etc and /var. */
export const HOST_SNAPSHOT = [
  'echo "### nft ruleset"; nft -s list ruleset',
  'echo "### ip -j addr"; ip -j addr show',
  'echo "### ip -j route"; ip -j route show table all',
  'echo "### sysctl net.*"; sysctl -a 2>/dev/null | grep "^net\\." | sort',
  'echo "### /etc /var"; find /etc /var | sort | while read -r f; do',
  '  if [ -L "$f" ]; then echo "link $f -> $(readlink "$f")";',
  '  elif [ -d "$f" ]; then echo "dir $(stat -c %a "$f") $f";',
  '  else echo "file $(stat -c %a "$f") $(sha256sum < "$f" | cut -c1-64) $f"; fi',
  'done',
].join('\n');

/** dist/ must hold the code under test: the provisioners run dist/agent/cli.js, not the TypeScript sources. */
export function assertDistFresh(): void {
  const root = repoRoot();
  const cli = path.join(root, 'dist', 'agent', 'cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npx tsc -p .\` first (npm test does)`);
  const built = statSync(cli).mtimeMs;
  const stale: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && statSync(p).mtimeMs > built) stale.push(path.relative(root, p));
    }
  };
  for (const d of ['agent', 'model']) walk(path.join(root, d));
  if (stale.length) throw new Error(`dist/ is older than ${stale.join(', ')}: run \`npx tsc -p .\` first (npm test does)`);
}

export function expectTerraformOk(r: RunResult, what: string): void {
  if (r.code !== 0) throw new Error(`terraform ${what} exited with ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
}

/** The suite's shared state: the lab once it runs, whether any step failed, whether the deployment succeeded. */
export interface VmSuite {
  lab?: VmLab;
  failed: boolean;
  deployed: boolean;
  readonly timings: Record<string, number>;
  /** A jest test that records its time and marks the suite failed when it throws. */
  step(name: string, timeoutMs: number, body: () => Promise<void>, needsDeploy?: boolean): void;
}

export function vmSuite(): VmSuite {
  const suite: VmSuite = {
    failed: false,
    deployed: false,
    timings: {},
    step(name, timeoutMs, body, needsDeploy = true) {
      test(
        name,
        async () => {
          const started = Date.now();
          try {
            if (!suite.lab) throw new Error('the VM lab did not start (see the error of beforeAll)');
            if (needsDeploy && !suite.deployed) throw new Error('not run: the deployment (first test) failed');
            await body();
          } catch (error) {
            suite.failed = true;
            throw error;
          } finally {
            suite.timings[name] = Date.now() - started;
          }
        },
        timeoutMs,
      );
    },
  };
  return suite;
}
