/** Running things in the labs from tests: a root shell on a lab host, and a command that must succeed. */
import type { RunResult } from '../../lab/l2/deploy';
import type { LabHost } from '../../lab/topology';

/** Runs a sh script as root inside the host; throws with its stderr unless it exits 0. */
export async function sh(host: LabHost, script: string): Promise<string> {
  const r = await host.exec(script);
  if (r.code !== 0) throw new Error(`on ${host.name} (exit ${r.code}): ${script}\n${r.stderr.trim()}`);
  return r.stdout;
}

/** Throws with the last 40 lines of output unless the run (terraform, cdktf, the CLI) exited 0. */
export function expectOk(what: string, r: RunResult): void {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${`${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-40).join('\n')}`);
}
