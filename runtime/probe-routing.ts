import { ProbeRouting, renderProbeRoutingCleanup } from '../model';
import { runCommand } from './nft';

export type CommandRunner = typeof runCommand;

async function must(run: CommandRunner, argv: readonly string[], input?: string): Promise<void> {
  const r = await run(argv, input);
  if (r.code !== 0 || r.stderr.trim()) throw new Error(`\`${argv.join(' ')}\` failed (exit ${r.code}): ${r.stderr.trim()}`);
}

const isRoute = (argv: readonly string[]) => argv[1] === 'route' || (argv[1] === '-6' && argv[2] === 'route');
const sameCommands = (a: readonly (readonly string[])[], b: readonly (readonly string[])[]) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Sets up the probe routing. From scratch when `previous` is unknown (a first start, which also removes what a
 * runtime killed with SIGKILL left) or when a family came or went; else as an update in place of what this process
 * installed: the tables replaced in one transaction, every route replaced (which also brings back one the kernel
 * dropped with its device: a tunnel the agent recreated, a link that went down), stale routes deleted, a missing
 * rule added. An update never tears the routing down first: the monitor keeps probing during a reload, and every
 * probe in flight while the tables or routes were gone failed (lab: 7 failed probes in 10 reloads).
 */
export async function installProbeRouting(routing: ProbeRouting, run: CommandRunner = runCommand, previous?: ProbeRouting): Promise<void> {
  const rules = (r: ProbeRouting) => r.commands.filter((c) => !isRoute(c));
  if (!previous || !sameCommands(rules(previous), rules(routing))) {
    await removeProbeRouting(run);
    await must(run, ['nft', '-f', '-'], routing.nft);
    for (const argv of routing.commands) await must(run, argv);
    return;
  }
  await must(run, ['nft', '-f', '-'], routing.nft);
  const routes = routing.commands.filter(isRoute);
  for (const argv of routes) await must(run, argv);
  // a route is replaced by destination: only destinations no route names any more are deleted
  const destination = (argv: readonly string[]) => `${argv[1]} ${argv[argv.indexOf('replace') + 1]}`;
  const wanted = new Set(routes.map(destination));
  for (const argv of previous.commands.filter(isRoute)) {
    if (wanted.has(destination(argv))) continue;
    // `ip [-6] route replace <destination> … table N` → `ip [-6] route del <destination> table N`; a route that is
    // gone already (the kernel dropped it with its device) is what this wants
    const at = argv.indexOf('replace');
    await run([...argv.slice(0, at), 'del', argv[at + 1], ...argv.slice(argv.indexOf('table'))]);
  }
  // `ip [-6] rule add pref N …`: added again only where it is gone (a second copy would be a duplicate)
  for (const argv of rules(routing)) {
    const at = argv.indexOf('add');
    const shown = await run([...argv.slice(0, at), 'show', 'pref', argv[argv.indexOf('pref') + 1]]);
    if (shown.code !== 0 || !shown.stdout.trim()) await must(run, argv);
  }
}

export async function removeProbeRouting(run: CommandRunner = runCommand): Promise<void> {
  await run(['sh', '-c', renderProbeRoutingCleanup()]);
}
