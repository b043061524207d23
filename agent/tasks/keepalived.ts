import {
  BalancerSpec,
  HostFile,
  KEEPALIVED_CHECK_SCRIPT,
  KEEPALIVED_CONFIG_FILE,
  KEEPALIVED_LOG_FILE,
  KEEPALIVED_PID_FILES,
  KEEPALIVED_UNIT,
  KEEPALIVED_UNIT_FILE,
  keepalivedArgv,
  renderCommand,
  renderKeepalivedUnit,
} from '../../model';
import type { HostFacts } from '../facts/gather';
import type { HostState } from '../state';
import { Step, Task, changed, failed, ok } from './task';
import { cmd } from './steps';

/** Every file keepalived can have on a pair member, so that facts always report the ones an earlier run left. */
export const KEEPALIVED_FILES = [KEEPALIVED_CONFIG_FILE, KEEPALIVED_CHECK_SCRIPT, KEEPALIVED_UNIT_FILE];

/** What the facts need to tell whether keepalived is installed and runs. */
export const KEEPALIVED_FACTS = { unit: KEEPALIVED_UNIT, pidFile: KEEPALIVED_PID_FILES.main };

/** The unit where systemd runs; elsewhere the agent starts keepalived itself (no file). */
export function keepalivedFiles(spec: BalancerSpec, systemd: boolean): HostFile[] {
  return systemd ? [{ path: KEEPALIVED_UNIT_FILE, content: renderKeepalivedUnit(spec), mode: '0644' }] : [];
}

/** keepalived is a prerequisite of a pair member (the agent installs no package): a failed task naming it. */
export function keepalivedInstalledTask(facts: HostFacts, host: string): Task {
  const version = facts.keepalived?.version;
  if (!version)
    return failed(
      'keepalived',
      `is not installed on ${host}; a member of a balancer pair needs keepalived 2.x for VRRP: install the distribution's package (apt-get install keepalived)`,
    );
  return ok('keepalived', version);
}

/** `keepalived -t` on the configuration just written, before keepalived loads it: a refused file rolls the run back. */
export function keepalivedConfigCheckTask(): Task {
  return changed(`keepalived configuration ${KEEPALIVED_CONFIG_FILE}`, 'checked with keepalived -t before loading', [
    {
      run: `out=$(${cmd('keepalived', '-t', '-f', KEEPALIVED_CONFIG_FILE)} 2>&1) || { printf 'keepalived -t refused the configuration:\\n%s\\n' "$out" | head -n 20 >&2; false; }`,
      undo: ':',
    },
  ]);
}

const pidFiles = Object.values(KEEPALIVED_PID_FILES);

/**
 * Started in its own session (it outlives this SSH session) without the apply script's descriptors; keepalived sets its
 * own signal handlers, so the SIGHUP the apply script ignores still reloads it. A pid file a killed keepalived left
 * behind would make it refuse to start: the facts found none alive, so they go first.
 */
const directStart = (): Step => ({
  run: [
    `${cmd('rm', '-f', ...pidFiles)}`,
    // `&` ends its command: no `;` after it
    `setsid ${renderCommand(keepalivedArgv())} </dev/null >>${renderCommand([KEEPALIVED_LOG_FILE])} 2>&1 9>&- & i=0`,
    `while [ ! -s ${renderCommand([KEEPALIVED_PID_FILES.main])} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done`,
    `[ -s ${renderCommand([KEEPALIVED_PID_FILES.main])} ] || { echo "keepalived did not start: $(tail -n 5 ${renderCommand([KEEPALIVED_LOG_FILE])})" >&2; false; }`,
  ].join('; '),
  undo: directStopCommand(),
});

function directStopCommand(pid = `$(cat ${renderCommand([KEEPALIVED_PID_FILES.main])} 2>/dev/null)`): string {
  return `p=${pid}; if [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; then i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; fi; ${cmd('rm', '-f', ...pidFiles)}`;
}

/**
 * Keeps keepalived running with this run's configuration: started when it is not running, reloaded (SIGHUP, after
 * `keepalived -t`) when its configuration or track script changed; a reload keeps the VIPs on the active member.
 */
export function keepalivedServiceTask(facts: HostFacts, configChanged: boolean): Task {
  if (facts.systemd) {
    const name = `keepalived (${KEEPALIVED_UNIT})`;
    const state = facts.keepalived?.unitState;
    if (state !== 'active')
      return changed(name, `started (was ${state ?? 'not installed'})`, [
        {
          run: `${cmd('systemctl', 'daemon-reload')} && ${cmd('systemctl', 'enable', '--now', KEEPALIVED_UNIT)}`,
          undo: cmd('systemctl', 'disable', '--now', KEEPALIVED_UNIT),
        },
      ]);
    if (configChanged) return changed(name, 'reloaded: new configuration', [{ run: cmd('systemctl', 'reload', KEEPALIVED_UNIT), undo: ':' }]);
    return ok(name, 'running');
  }
  const name = 'keepalived (started by tula-dsr)';
  const pid = facts.keepalived?.pid;
  if (!pid) return changed(name, 'started', [directStart()]);
  if (configChanged) return changed(name, 'reloaded: new configuration (SIGHUP)', [{ run: `kill -HUP ${pid}`, undo: ':' }]);
  return ok(name, `running (pid ${pid})`);
}

/** Stops the keepalived an earlier run started (a member leaving its pair, or remove): it drops the VIPs it holds. */
export function keepalivedStopTask(facts: HostFacts, state: HostState | null, why: string): Task | null {
  if (!state?.keepalived) return null;
  const leftovers: Step = { run: cmd('rm', '-f', KEEPALIVED_LOG_FILE, ...pidFiles), undo: ':' };
  if (state.keepalived.service === 'systemd') {
    if (!facts.systemd) return null;
    return changed(`keepalived (${KEEPALIVED_UNIT})`, why, [
      {
        run: `${cmd('systemctl', 'disable', '--now', KEEPALIVED_UNIT)} && ${cmd('systemctl', 'daemon-reload')}`,
        undo: cmd('systemctl', 'enable', '--now', KEEPALIVED_UNIT),
      },
      leftovers,
    ]);
  }
  const pid = facts.keepalived?.pid;
  const name = 'keepalived (started by tula-dsr)';
  if (!pid) return changed(name, `${why} (was not running)`, [leftovers]);
  return changed(name, why, [{ run: directStopCommand(String(pid)), undo: directStart().run }, leftovers]);
}
