import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  BalancerFacts,
  BalancerSpec,
  FlowCopyConfig,
  HostFile,
  RUNTIME_BUNDLE_FILE,
  RUNTIME_CONFIG_FILE,
  RUNTIME_NODE_MAJOR,
  RUNTIME_LOG_FILE,
  RUNTIME_PID_FILE,
  RUNTIME_STATE_FILE,
  RUNTIME_SUPERVISOR_FILE,
  RUNTIME_UNIT,
  RUNTIME_UNIT_FILE,
  renderCommand,
  renderRuntimeConfig,
  renderRuntimeSupervisor,
  renderProbeRoutingCleanup,
  renderRuntimeUnit,
  StatsTextfileSettings,
  isStatsTextfilePath,
} from '../../model';
import type { HostFacts } from '../facts/gather';
import type { HostState } from '../state';
import { Step, Task, changed, failed, ok } from './task';
import { cmd } from './steps';

/** Every file the runtime can have on a balancer, so that facts always report the ones an earlier run left. */
export const RUNTIME_FILES = [RUNTIME_BUNDLE_FILE, RUNTIME_CONFIG_FILE, RUNTIME_UNIT_FILE, RUNTIME_SUPERVISOR_FILE];

/** What the facts need to tell whether the runtime can run and runs. */
export const RUNTIME_FACTS = { unit: RUNTIME_UNIT, pidFile: RUNTIME_PID_FILE, supervisor: path.basename(RUNTIME_SUPERVISOR_FILE) };

let bundle: string | undefined;

/**
 * The runtime as one file: built next to the agent (dist/runtime), or, from the sources, in dist/; from the agent's
 * own bundle (dist/agent/tula-dsr.js), one folder up.
 */
export function runtimeBundle(): string {
  if (bundle === undefined) {
    const candidates = [
      path.join(__dirname, '..', '..', 'runtime', 'tula-dsr-runtime.js'),
      path.join(__dirname, '..', 'runtime', 'tula-dsr-runtime.js'),
      path.join(__dirname, '..', '..', 'dist', 'runtime', 'tula-dsr-runtime.js'),
    ];
    const found = candidates.find((c) => existsSync(c));
    if (!found) throw new Error(`the balancer runtime's bundle is missing (looked at ${candidates.join(', ')}): run \`npm run build\``);
    bundle = readFileSync(found, 'utf8');
  }
  return bundle;
}

/** The runtime's files for a balancer that needs it: the bundle, its configuration, and how it is kept running. */
export function runtimeFiles(spec: BalancerSpec, facts: BalancerFacts, systemd: boolean, flowCopy?: FlowCopyConfig): HostFile[] {
  return [
    { path: RUNTIME_BUNDLE_FILE, content: runtimeBundle(), mode: '0644', opaque: true },
    { path: RUNTIME_CONFIG_FILE, content: renderRuntimeConfig(spec, facts, flowCopy), mode: '0644' },
    systemd
      ? { path: RUNTIME_UNIT_FILE, content: renderRuntimeUnit(spec.name), mode: '0644' }
      : { path: RUNTIME_SUPERVISOR_FILE, content: renderRuntimeSupervisor(), mode: '0755' },
  ];
}

/** Node on the balancer, as the runtime needs it; a failed task that names the package otherwise. */
export function nodeTask(facts: HostFacts, host: string): Task {
  const version = facts.runtime?.node;
  const major = Number(/^v(\d+)\./.exec(version ?? '')?.[1]);
  const fix = `health checks, least connections, the statistics textfile and a balancer pair's flow copy run in tula-dsr's runtime on the balancer, which needs Node.js ${RUNTIME_NODE_MAJOR} or later: install the distribution's package (apt-get install nodejs)`;
  if (!version) return failed('node', `is not installed on ${host}; ${fix}`);
  if (!(major >= RUNTIME_NODE_MAJOR)) return failed('node', `${version} on ${host} is too old; ${fix}`);
  return ok('node', `${version}`);
}

const supervisorStart = (): Step => ({
  // its own session (it outlives this SSH session), none of the apply script's descriptors (fd 9 holds the host
  // lock, the others are the SSH channel)
  run: `setsid sh ${renderCommand([RUNTIME_SUPERVISOR_FILE])} </dev/null >/dev/null 2>&1 9>&- & echo $! > ${renderCommand([RUNTIME_PID_FILE])}`,
  undo: `kill -TERM "$(cat ${renderCommand([RUNTIME_PID_FILE])} 2>/dev/null)" 2>/dev/null; rm -f ${renderCommand([RUNTIME_PID_FILE])}`,
});

/**
 * Keeps the runtime running with what this run installed: started when it is not running, restarted when its
 * bundle or how it runs changed, told to reload (SIGHUP) when its configuration or the table changed. Where systemd
 * runs, through `tula-dsr-runtime.service`; elsewhere through the agent's supervisor (see renderRuntimeSupervisor).
 */
export function runtimeServiceTask(facts: HostFacts, changes: { readonly program: boolean; readonly config: boolean }): Task {
  const name = `balancer runtime (${facts.systemd ? RUNTIME_UNIT : 'supervised by tula-dsr'})`;
  if (facts.systemd) {
    const active = facts.runtime?.unitState === 'active';
    if (!active)
      return changed(name, `started (was ${facts.runtime?.unitState ?? 'not installed'})`, [
        {
          run: `${cmd('systemctl', 'daemon-reload')} && ${cmd('systemctl', 'enable', '--now', RUNTIME_UNIT)}`,
          undo: cmd('systemctl', 'disable', '--now', RUNTIME_UNIT),
        },
      ]);
    if (changes.program)
      return changed(name, 'restarted: a new runtime', [
        { run: `${cmd('systemctl', 'daemon-reload')} && ${cmd('systemctl', 'restart', RUNTIME_UNIT)}`, undo: ':' },
      ]);
    if (changes.config) return changed(name, 'reloaded: new configuration or table', [{ run: cmd('systemctl', 'reload', RUNTIME_UNIT), undo: ':' }]);
    return ok(name, 'running');
  }
  const pid = facts.runtime?.supervisorPid;
  if (!pid) return changed(name, 'started', [supervisorStart()]);
  // the supervisor starts the new bundle a second after the old runtime ends
  if (changes.program) return changed(name, 'restarted: a new runtime', [{ run: `pkill -TERM -P ${pid} || true`, undo: ':' }]);
  if (changes.config) return changed(name, 'reloaded: new configuration or table', [{ run: `kill -USR1 ${pid}`, undo: ':' }]);
  return ok(name, `running (supervisor ${pid})`);
}

/** Stops a runtime an earlier run started, when the balancer needs it no more (or at remove). */
export function runtimeStopTask(facts: HostFacts, state: HostState | null, why: string): Task | null {
  if (!state?.runtime) return null;
  const name = `balancer runtime (${state.runtime.service === 'systemd' ? RUNTIME_UNIT : 'supervised by tula-dsr'})`;
  // what the runtime wrote itself goes with it (its view of the backends, its log, its statistics textfile), once it
  // has stopped (and its probe routing, which a runtime killed by SIGKILL could not remove)
  const written = [RUNTIME_STATE_FILE, RUNTIME_LOG_FILE, RUNTIME_PID_FILE, ...recordedTextfile(state)];
  const leftovers: Step = { run: `${cmd('rm', '-f', ...written)}; ${renderProbeRoutingCleanup()}`, undo: ':' };
  if (state.runtime.service === 'systemd') {
    if (!facts.systemd) return null;
    const stop = {
      run: `${cmd('systemctl', 'disable', '--now', RUNTIME_UNIT)} && ${cmd('systemctl', 'daemon-reload')}`,
      undo: cmd('systemctl', 'enable', '--now', RUNTIME_UNIT),
    };
    return changed(name, why, [stop, leftovers]);
  }
  const pid = facts.runtime?.supervisorPid;
  if (!pid) return changed(name, `${why} (was not running)`, [leftovers]);
  return changed(name, why, [{ run: `kill -TERM ${pid} && while kill -0 ${pid} 2>/dev/null; do sleep 0.1; done`, undo: supervisorStart().run }, leftovers]);
}

/** The textfile an earlier run's runtime writes, as the state records it; a path that is not one tula-dsr writes is never removed. */
function recordedTextfile(state: HostState | null): string[] {
  const path = state?.runtime?.statsTextfile;
  return isStatsTextfilePath(path) ? [path] : [];
}

/**
 * The textfile an earlier configuration wrote, when the runtime goes on running but writes another one or none: it
 * goes after the runtime has taken the new configuration (which also removes it, so a write in flight cannot bring it
 * back).
 */
export function staleTextfileTask(state: HostState | null, wanted: StatsTextfileSettings | null): Task | null {
  const [before] = recordedTextfile(state);
  if (!before || before === wanted?.path) return null;
  const why = wanted ? `replaced by ${wanted.path}` : 'no longer wanted';
  return changed(`statistics textfile ${before}`, `${why}: removed`, [{ run: cmd('rm', '-f', before), undo: ':' }]);
}

/** The folder of the textfile must exist: it is node_exporter's textfile collector's, which tula-dsr does not set up. */
export function textfileFolderTask(facts: HostFacts, host: string, wanted: StatsTextfileSettings): Task {
  const folder = path.posix.dirname(wanted.path);
  const name = `statistics textfile ${wanted.path}`;
  if (folder !== '/' && facts.dirs[folder] !== true)
    return failed(
      name,
      `the folder ${folder} does not exist on ${host}; install node_exporter's textfile collector there (Debian: apt-get install prometheus-node-exporter), create the folder, or choose another statsTextfile`,
    );
  return ok(name, `written by the runtime every ${wanted.intervalSec} s`);
}
