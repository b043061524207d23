/**
 * What `require("tula-dsr/agent")` loads: Terraform's provisioners run `main(["apply"])` from here, one process
 * per host. This module stays small (no zod, no ssh2) and hands the run to the per-user agent daemon; the full
 * agent loads in this process only when the daemon is turned off (TULA_DSR_DAEMON=0) or cannot be used.
 */
import type * as Cli from './cli';
import { daemonDisabled, runThroughDaemon } from './daemon/client';
import { processIo } from './io';

export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  const io = processIo();
  if (!daemonDisabled(process.env)) {
    const code = await runThroughDaemon(argv, io);
    if (typeof code === 'number') {
      process.exitCode = code;
      return code;
    }
    io.stderr(`tula-dsr: agent daemon unavailable (${code.unavailable}); running the agent in this process\n`);
  }
  return (require('./cli') as typeof Cli).main(argv);
}
