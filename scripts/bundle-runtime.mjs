// Bundles the balancer runtime (runtime/main.ts and what it imports from model/, zod and ipaddr.js included) into one
// self-contained file that the agent ships to balancers: nothing is installed there but Node from the distribution.
import { build } from 'esbuild';
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist', 'runtime', 'tula-dsr-runtime.js');
await build({
  entryPoints: [join(root, 'runtime', 'main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  // Debian 12's nodejs is 18.19 (RUNTIME_NODE_MAJOR in model/runtime-config.ts)
  target: 'node18',
  format: 'cjs',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
process.stdout.write(`bundle-runtime: ${outfile} (${Math.round(statSync(outfile).size / 1024)} KiB)\n`);
