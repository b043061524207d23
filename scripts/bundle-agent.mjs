// Bundles the agent CLI (agent/cli.ts and what it imports: the model, zod, ipaddr.js) into one file,
// dist/agent/tula-dsr-agent.js, and installs the `tula-dsr` bin next to it (dist/agent/tula-dsr.js, from
// scripts/agent-bin.js), which runs the bundle with V8's code cache. Loading forty-odd compiled modules and zod's
// hundred cost about a quarter of a second per run; one file loads in a fraction of that. ssh2 stays a normal
// dependency: its native crypto binding and WebAssembly poly1305 are found next to its own files. The agent daemon
// runs the bundle too (agent/bundle-loader.ts); dist/agent/cli.js and the rest stay as tsc emits them (the provisioners'
// client, the daemon's server and the tests import them).
import { build } from 'esbuild';
import { chmodSync, copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist', 'agent', 'tula-dsr-agent.js');
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
// the bin runs it (and compiles it inside a function, where a #! line is a syntax error)
const code = readFileSync(outfile, 'utf8');
if (code.startsWith('#!')) writeFileSync(outfile, `//${code.slice(2)}`);
const bin = join(root, 'dist', 'agent', 'tula-dsr.js');
copyFileSync(join(root, 'scripts', 'agent-bin.js'), bin);
chmodSync(bin, 0o755);
// the provisioner's perl client (constructs/host-resource.ts runs it from the installed package)
copyFileSync(join(root, 'agent', 'daemon', 'client.pl'), join(root, 'dist', 'agent', 'daemon', 'client.pl'));
process.stdout.write(`bundle-agent: ${outfile} (${Math.round(statSync(outfile).size / 1024)} KiB), ${bin}\n`);
