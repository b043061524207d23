/**
 * tula-dsr's balancer runtime, shipped to the balancer as one bundled file and run by systemd
 * (`tula-dsr-runtime.service`) or, on hosts without systemd, by the agent's supervisor script. It reads the
 * configuration the agent installed, keeps the managed slot pools in line with backend health and least connections,
 * and records its view in the state file. SIGHUP: the agent installed a new configuration or reloaded the table.
 */
import { RUNTIME_CONFIG_FILE, RUNTIME_STATE_FILE, statsTextfileSettings } from '../model';
import { stderrLogger } from './log';
import { systemNft } from './nft';
import { Runtime } from './runtime';
import { StatsWriter } from './stats-writer';
import { FlowCopyService, systemNftLister } from './flow-copy/service';

/** How often the state file is rewritten even when nothing changed: the agent reads its age as a heartbeat. */
const HEARTBEAT_MS = 5_000;

function every(ms: number, task: () => Promise<void>): () => void {
  let running = false;
  const timer = setInterval(() => {
    // a round that is still running (a slow nft) is not doubled
    if (running) return;
    running = true;
    task().finally(() => (running = false));
  }, ms);
  return () => clearInterval(timer);
}

export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  const log = stderrLogger();
  const runtime = new Runtime(argv[0] ?? RUNTIME_CONFIG_FILE, { nft: systemNft(), log, now: Date.now, statePath: argv[1] ?? RUNTIME_STATE_FILE });
  const guarded = (what: string, task: () => Promise<void>) => () => task().catch((error: Error) => log('error', `${what}: ${error.message}`));
  runtime.load();
  await guarded('start', () => runtime.start())();
  log('info', `started (pid ${process.pid}) for balancer ${runtime.spec.name}: ${runtime.summary()}`);
  const stats = new StatsWriter(() => ({ spec: runtime.spec, pools: runtime.poolGroups, state: () => runtime.state() }), { log });
  void stats.configure(statsTextfileSettings(runtime.spec));
  const nft = systemNft();
  const flowCopy = new FlowCopyService({ nft, list: systemNftLister(), log, now: Date.now });
  runtime.flowCopyStatus = () => flowCopy.status();
  await guarded('flow copy', () => flowCopy.configure(runtime.configuration))();

  const stops = [
    every(
      runtime.leastConnectionsIntervalMs(),
      guarded('least connections', () => runtime.leastConnectionsRound()),
    ),
    every(
      HEARTBEAT_MS,
      guarded('state file', async () => runtime.writeState()),
    ),
  ];
  process.on('SIGHUP', () => {
    log('info', 'SIGHUP: reading the configuration again and syncing the pools with the table');
    guarded('reload', async () => {
      runtime.load();
      void stats.configure(statsTextfileSettings(runtime.spec));
      await runtime.start();
      await flowCopy.configure(runtime.configuration);
    })();
  });
  const stop = (signal: string) => {
    log('info', `${signal}: stopping`);
    for (const s of stops) s();
    stats.stop();
    void flowCopy.stop();
    runtime
      .stop()
      .catch((error: Error) => log('error', `stop: ${error.message}`))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (require.main === module) {
  main().catch((error: Error) => {
    process.stderr.write(`tula-dsr-runtime: ${error.message}\n`);
    process.exit(1);
  });
}
