// Bundles the agent CLI (agent/cli.ts and what it imports: the model, zod, ipaddr.js) into one file,
// dist/agent/tula-dsr.js, which the `tula-dsr` bin runs. Loading forty-odd compiled modules and zod's hundred cost
// about a quarter of a second per run; one file loads in a fraction of that. ssh2 stays a normal dependency: its
// native crypto binding and WebAssembly poly1305 are found next to its own files. dist/agent/cli.js and the rest stay
// as tsc emits them (the daemon and the tests import them).
import { build } from 'esbuild';
import { chmodSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist', 'agent', 'tula-dsr.js');
await build({
  entryPoints: [join(root, 'agent', 'cli.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['ssh2', 'cpu-features'],
  // whitespace and syntax only: names stay as written, for stack traces
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);
process.stdout.write(`bundle-agent: ${outfile} (${Math.round(statSync(outfile).size / 1024)} KiB)\n`);
