import { App, TerraformStack } from 'cdktf';
import { NullProvider } from '@cdktf/provider-null/lib/provider';
import { Resource as NullResource } from '@cdktf/provider-null/lib/resource';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Balancer, BackendHost, DsrVip } from '../constructs';
import { formatIpv4 } from '../model';

/**
 * Synth at scale, in this process: 1,000 VIPs × 10 backends against the same number of bare null_resources.
 * Returns wall time and the heap growth of each run.
 */
export const SCALE = { vips: 1000, backends: 10 };

const KEY = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

export function synthDsr(outdir: string, vips = SCALE.vips, backends = SCALE.backends): void {
  const app = new App({ outdir });
  const stack = new TerraformStack(app, 'scale');
  const lb = new Balancer(stack, 'lb', { ssh: { host: '10.10.0.2', hostKey: KEY }, interface: 'eth0', subnet: '10.10.0.0/16' });
  const hosts = Array.from({ length: backends }, (_, i) => new BackendHost(stack, `be${i}`, { ssh: { host: `10.10.1.${i + 10}`, hostKey: KEY } }));
  for (let v = 0; v < vips; v++) {
    const vip = new DsrVip(stack, `vip${v}`, { balancer: lb, ip: formatIpv4(0x0a0a0000 + 512 + v), port: 80 });
    hosts.forEach((host, i) => vip.addBackend(`be${i}`, { host, weight: 1 + (i % 3) }));
  }
  app.synth();
}

export function synthBare(outdir: string, count = SCALE.vips * (SCALE.backends + 1)): void {
  const app = new App({ outdir });
  const stack = new TerraformStack(app, 'bare');
  new NullProvider(stack, 'null');
  for (let i = 0; i < count; i++) new NullResource(stack, `r${i}`, { triggers: { index: String(i) } });
  app.synth();
}

export function measure(run: (outdir: string) => void): { ms: number; heapMb: number } {
  const dir = mkdtempSync(join(tmpdir(), 'tula-synth-'));
  try {
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const start = process.hrtime.bigint();
    run(dir);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    const heapMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    return { ms, heapMb };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const which = process.argv[2];
  const result = measure(which === 'bare' ? (d) => synthBare(d) : (d) => synthDsr(d));
  process.stdout.write(JSON.stringify({ which, ...result, peakRssMb: process.resourceUsage().maxRSS / 1024 }) + '\n');
}
