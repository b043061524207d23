import { ProbeRouting, renderProbeRoutingCleanup } from '../model';
import { runCommand } from './nft';

export type CommandRunner = typeof runCommand;

async function must(run: CommandRunner, argv: readonly string[], input?: string): Promise<void> {
  const r = await run(argv, input);
  if (r.code !== 0 || r.stderr.trim()) throw new Error(`\`${argv.join(' ')}\` failed (exit ${r.code}): ${r.stderr.trim()}`);
}

/** Removes what an earlier runtime left (a SIGKILL leaves it all), then sets up the probe routing afresh. */
export async function installProbeRouting(routing: ProbeRouting, run: CommandRunner = runCommand): Promise<void> {
  await removeProbeRouting(run);
  await must(run, ['nft', '-f', '-'], routing.nft);
  for (const argv of routing.commands) await must(run, argv);
}

export async function removeProbeRouting(run: CommandRunner = runCommand): Promise<void> {
  await run(['sh', '-c', renderProbeRoutingCleanup()]);
}
