/**
 * How the agent keeps the balancer runtime running, decided from the facts: the systemd path (which the namespace
 * lab cannot run: it has no systemd) and the supervisor path (which the lab runs end to end, test/e2e/health.test.ts).
 */
import type { HostFacts } from '../../agent/facts/gather';
import type { HostState } from '../../agent/state';
import { nodeTask, runtimeServiceTask, runtimeStopTask } from '../../agent/tasks/runtime';
import { renderRuntimeSupervisor, renderRuntimeUnit } from '../../model';

/** Only what these tasks read: the rest of HostFacts plays no part here. */
const facts = (systemd: boolean, runtime: HostFacts['runtime']) => ({ systemd, runtime, files: {} }) as unknown as HostFacts;
const state = (service: 'systemd' | 'supervisor') => ({ runtime: { service } }) as unknown as HostState;
const summary = (t: { status: string; detail: string; steps: readonly { run: string }[] }) => [t.status, t.detail, ...t.steps.map((s) => s.run)];
const unchanged = { program: false, config: false };

describe('the runtime under systemd', () => {
  test.each([
    ['inactive', unchanged, ['changed', 'started (was inactive)', 'systemctl daemon-reload && systemctl enable --now tula-dsr-runtime.service']],
    [undefined, unchanged, ['changed', 'started (was not installed)', 'systemctl daemon-reload && systemctl enable --now tula-dsr-runtime.service']],
    [
      'active',
      { program: true, config: true },
      ['changed', 'restarted: a new runtime', 'systemctl daemon-reload && systemctl restart tula-dsr-runtime.service'],
    ],
    ['active', { program: false, config: true }, ['changed', 'reloaded: new configuration or table', 'systemctl reload tula-dsr-runtime.service']],
    ['active', unchanged, ['ok', 'running']],
  ] as const)('GIVEN the unit %s and changes %j THEN the task is %j', (unitState, changes, expected) => {
    expect(summary(runtimeServiceTask(facts(true, { node: 'v18.19.0', unitState }), changes))).toEqual(expected);
  });

  test('GIVEN the unit THEN it restarts on failure and reloads with SIGHUP', () => {
    const unit = renderRuntimeUnit('lb1');
    expect(unit).toContain('ExecStart=/usr/bin/env node /usr/local/lib/tula-dsr/tula-dsr-runtime.js /etc/tula-dsr/runtime.json');
    expect(unit).toContain('Restart=on-failure');
    expect(unit).toContain('ExecReload=/bin/kill -HUP $MAINPID');
  });

  test('GIVEN a runtime tula-dsr started with systemd WHEN it is no longer needed THEN the unit is disabled and its leftovers go', () => {
    const t = runtimeStopTask(facts(true, { unitState: 'active' }), state('systemd'), 'stopped')!;
    expect(t.steps[0].run).toBe('systemctl disable --now tula-dsr-runtime.service && systemctl daemon-reload');
    expect(t.steps[1].run).toMatch(
      /^rm -f \/var\/lib\/tula-dsr\/runtime-state.json \/var\/log\/tula-dsr-runtime.log \/run\/tula-dsr-runtime.pid; while ip rule del pref 1061/,
    );
  });
});

describe('the runtime under the supervisor', () => {
  test('GIVEN no supervisor running THEN it is started in its own session without the lock descriptor, and its PID kept', () => {
    const [status, detail, run] = summary(runtimeServiceTask(facts(false, { node: 'v20.1.0' }), unchanged));
    expect([status, detail]).toEqual(['changed', 'started']);
    expect(run).toBe('setsid sh /usr/local/lib/tula-dsr/runtime-supervisor.sh </dev/null >/dev/null 2>&1 9>&- & echo $! > /run/tula-dsr-runtime.pid');
  });

  test.each([
    [{ program: true, config: false }, ['changed', 'restarted: a new runtime', 'pkill -TERM -P 4242 || true']],
    [{ program: false, config: true }, ['changed', 'reloaded: new configuration or table', 'kill -USR1 4242']],
    [unchanged, ['ok', 'running (supervisor 4242)']],
  ] as const)('GIVEN supervisor 4242 and changes %j THEN the task is %j', (changes, expected) => {
    expect(summary(runtimeServiceTask(facts(false, { supervisorPid: 4242 }), changes))).toEqual(expected);
  });

  test('GIVEN the supervisor THEN it relays SIGUSR1 and SIGHUP to the runtime as SIGHUP, stops it on SIGTERM and restarts it a second after it exits', () => {
    const script = renderRuntimeSupervisor();
    expect(script).toContain('trap \'[ -n "$child" ] && kill -HUP "$child" 2>/dev/null\' HUP USR1');
    expect(script).toContain('trap \'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null\' TERM INT');
    expect(script).toContain('[ -n "$stopping" ] || sleep 1');
  });
});

describe('Node on the balancer', () => {
  test.each([
    [
      undefined,
      'failed',
      'is not installed on lb1; health checks, least connections, the statistics textfile and a balancer pair’s flow copy run in tula-dsr’s runtime',
    ],
    [
      'v16.20.2',
      'failed',
      'v16.20.2 on lb1 is too old; health checks, least connections, the statistics textfile and a balancer pair’s flow copy run in tula-dsr’s runtime',
    ],
    ['v18.19.0', 'ok', 'v18.19.0'],
  ] as const)('GIVEN node %s THEN the node task is %s', (version, status, start) => {
    const t = nodeTask(facts(true, { node: version }), 'lb1');
    expect(t.status).toBe(status);
    expect(t.detail.replace(/'/g, '’')).toContain(start);
    if (status === 'failed') expect(t.detail).toContain('apt-get install nodejs');
  });
});
