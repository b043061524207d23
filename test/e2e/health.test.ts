/**
 * Health checks end to end on the L2 namespace lab: the example stack with an HTTP check on the web VIP, deployed
 * with the real terraform; the agent installs the runtime (here without systemd: its own supervisor), the runtime
 * probes each backend through the VIP and rewrites the web pool's slots. Real HTTP traffic from the client shows
 * what the users get: a backend whose service stops, or whose host goes off the network, stops getting new flows
 * within intervalSec × fall + 1 s and comes back within intervalSec × rise + 1 s of its recovery; when every
 * backend fails, the VIP sends to all of them (fail open); an apply while a backend is down leaves it out; a runtime
 * killed with SIGKILL is restarted and keeps its view; a service bound to the VIP only is probed through it.
 *
 * Needs root and terraform; without them every test here fails (none is skipped).
 */
import { createL2Lab, L2Lab } from '../../lab/l2/lab';
import { Workspace } from '../../lab/l2/deploy';
import { BurstResult, httpBurst } from '../../lab/l2/traffic';
import type { ExampleOptions } from '../../lab/example-stack';
import { PROBE_TABLE, RUNTIME_PID_FILE, RUNTIME_STATE_FILE, RuntimeState, parseRuntimeState } from '../../model';
import { applyExample, deployExample, expectOk, sh } from '../support/lab-run';

jest.setTimeout(180_000);

const CHECK = { kind: 'http', path: '/name', intervalSec: 0.5, timeoutSec: 0.3, fall: 3, rise: 2 } as const;
const DOWN_BOUND_MS = (CHECK.intervalSec * CHECK.fall + 1) * 1000;
const UP_BOUND_MS = (CHECK.intervalSec * CHECK.rise + 1) * 1000;
const OPTIONS: ExampleOptions = { backends: ['web1', 'web2', 'web3'], weights: { web1: 1, web2: 1, web3: 1 }, healthCheck: CHECK };

let l2: L2Lab;
let ws: Workspace;
const macs: Record<string, string> = {};

/** The backends (by name) the web pool's slots send new flows to, as the kernel holds them now. */
async function slotBackends(): Promise<string[]> {
  const listing = await sh(l2.lb, 'nft list map netdev tula_dsr slots_l2_rt');
  return Object.entries(macs)
    .filter(([, mac]) => listing.includes(mac))
    .map(([name]) => name)
    .sort();
}

/** Polls the slot table every 50 ms until `done` holds; the time it took, or a failure naming what it saw. */
async function timeUntil(what: string, done: (backends: string[]) => boolean, boundMs: number): Promise<number> {
  const started = Date.now();
  let seen: string[] = [];
  while (Date.now() - started < boundMs + 3000) {
    seen = await slotBackends();
    if (done(seen)) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not within ${boundMs + 3000} ms; the slots still send to ${seen.join(', ')}; the runtime's log:\n${await runtimeLog()}`);
}

/** The runtime's state file (waiting up to 5 s for a runtime that has just started to write it). */
async function runtimeState(): Promise<RuntimeState> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const state = parseRuntimeState((await l2.lb.exec(`cat ${RUNTIME_STATE_FILE}`)).stdout);
    if (state) return state;
    if (Date.now() > deadline) throw new Error(`the runtime state file is missing or unreadable; the runtime's log:\n${await runtimeLog()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const runtimeLog = async () =>
  (
    await l2.lb.exec(
      `tail -n 30 /var/log/tula-dsr-runtime.log; cat ${RUNTIME_STATE_FILE}; nft list table ip ${PROBE_TABLE}; ip rule; ip route show table 61000; ps -ef | grep [t]ula`,
    )
  ).stdout;

const burst = (count: number, pauseMs = 0): Promise<BurstResult> =>
  httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count, concurrency: 2, path: '/name', pauseMs });

async function expectServedBy(names: string[]): Promise<void> {
  const r = await burst(60);
  expect({ failures: r.failures, backends: Object.keys(r.counts).sort() }).toEqual({ failures: 0, backends: names });
}

beforeAll(async () => {
  l2 = await createL2Lab({ backends: 3 });
  for (const b of l2.backends) macs[b.name] = (await sh(b, 'cat /sys/class/net/eth0/address')).trim();
  ws = await deployExample(l2, OPTIONS);
}, 120_000);

afterAll(async () => {
  await l2?.teardown();
  ws?.remove();
});

describe('health checks on the L2 lab', () => {
  test('GIVEN the applied stack THEN the runtime runs under the supervisor, probes every backend through the VIP and finds them up', async () => {
    const pid = Number((await sh(l2.lb, `cat ${RUNTIME_PID_FILE}`)).trim());
    expect(await sh(l2.lb, `tr '\\0' ' ' < /proc/${pid}/cmdline`)).toContain('runtime-supervisor.sh');
    let state = await runtimeState();
    // the runtime rewrites its state file every 5 s, and at every change
    const deadline = Date.now() + 8000;
    while (state.checks.length < 3 || state.checks.some((c) => c.lastProbeAt === undefined)) {
      if (Date.now() > deadline) throw new Error(`the runtime has not probed every backend: ${JSON.stringify(state.checks)}`);
      await new Promise((r) => setTimeout(r, 200));
      state = await runtimeState();
    }
    expect(state.checks.map((c) => [c.backend, c.state, c.vip]).sort()).toEqual(l2.backends.map((b) => [b.ip, 'up', 'web']));
    expect(await slotBackends()).toEqual(['web1', 'web2', 'web3']);
    // the probes' own routing: the rule, the route table and both rewrite tables
    expect(await sh(l2.lb, 'ip rule show')).toMatch(/^1061:\tfrom all fwmark 0xee48 lookup 61000$/m);
    expect(await sh(l2.lb, `nft list tables`)).toContain(`table netdev ${PROBE_TABLE}`);
    await expectServedBy(['web1', 'web2', 'web3']);
  });

  test('GIVEN every backend up WHEN the runtime reloads ten times (what every apply that changes its configuration or table does) THEN no probe fails', async () => {
    const failures = async () => Object.fromEntries((await runtimeState()).checks.map((c) => [c.backend, c.failures]));
    const reloads = async () => (await sh(l2.lb, 'cat /var/log/tula-dsr-runtime.log')).split('SIGHUP:').length - 1;
    const [before, reloadsBefore] = [await failures(), await reloads()];
    expect(Object.values(before).every((n) => typeof n === 'number')).toBe(true);
    const supervisor = (await sh(l2.lb, `cat ${RUNTIME_PID_FILE}`)).trim();
    for (let i = 0; i < 10; i++) {
      await sh(l2.lb, `kill -USR1 ${supervisor}`);
      // longer than a probe interval: every target probes around each reload
      await new Promise((r) => setTimeout(r, 600));
    }
    await new Promise((r) => setTimeout(r, 5500)); // the state file is rewritten at least every 5 s
    expect(await reloads()).toBe(reloadsBefore + 10);
    // before the routing was updated in place, 5 of 20 reloads cost a probe
    expect(await failures()).toEqual(before);
    expect(await slotBackends()).toEqual(['web1', 'web2', 'web3']);
    // a route the kernel dropped (its device went down) or someone deleted comes back with the next reload
    const web1 = l2.backends[0].ip;
    await sh(l2.lb, `ip route del ${web1} table 61000`);
    await sh(l2.lb, `kill -USR1 ${supervisor}`);
    const routeDeadline = Date.now() + 3000;
    while (!(await sh(l2.lb, 'ip route show table 61000')).includes(`${web1} via ${web1}`)) {
      if (Date.now() > routeDeadline) throw new Error(`the reload did not bring back the probe route to ${web1}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  test('GIVEN a request loop WHEN web2’s service stops THEN it gets no new flows within interval × fall + 1 s, then 0 requests fail; restarted, it is back within interval × rise + 1 s', async () => {
    const loop = burst(300, 20);
    await new Promise((r) => setTimeout(r, 300));
    await l2.stopServer('web2');
    const downMs = await timeUntil('web2 out of the slots', (b) => !b.includes('web2'), DOWN_BOUND_MS);
    const during = await loop;
    console.log(
      `service stopped: web2 out of new flows after ${downMs} ms (bound ${DOWN_BOUND_MS} ms); the loop meanwhile: ${JSON.stringify(during.counts)}, ${during.failures} failed`,
    );
    expect(downMs).toBeLessThanOrEqual(DOWN_BOUND_MS);
    await expectServedBy(['web1', 'web3']);
    const state = await runtimeState();
    expect(state.pools[0].down).toEqual([l2.backends[1].ip]);
    expect(state.checks.find((c) => c.backend === l2.backends[1].ip)?.lastError).toMatch(/refused/);

    await l2.startServer('web2');
    const upMs = await timeUntil('web2 back in the slots', (b) => b.includes('web2'), UP_BOUND_MS);
    console.log(`service restarted: web2 back after ${upMs} ms (bound ${UP_BOUND_MS} ms)`);
    expect(upMs).toBeLessThanOrEqual(UP_BOUND_MS);
    await expectServedBy(['web1', 'web2', 'web3']);
  });

  test('GIVEN web3’s interface goes down THEN it leaves the slots within interval × fall + 1 s (its probes time out) and returns when the interface is up', async () => {
    await sh(l2.backends[2], 'ip link set eth0 down');
    let downMs: number;
    try {
      downMs = await timeUntil('web3 out of the slots', (b) => !b.includes('web3'), DOWN_BOUND_MS);
      await expectServedBy(['web1', 'web2']);
    } finally {
      await sh(l2.backends[2], 'ip link set eth0 up');
    }
    const upMs = await timeUntil('web3 back in the slots', (b) => b.includes('web3'), UP_BOUND_MS + 1000);
    console.log(`interface down: web3 out after ${downMs} ms (bound ${DOWN_BOUND_MS} ms); interface up: back after ${upMs} ms`);
    expect(downMs).toBeLessThanOrEqual(DOWN_BOUND_MS);
    expect((await runtimeState()).checks.find((c) => c.backend === l2.backends[2].ip)?.state).toBe('up');
  });

  test('GIVEN every backend fails its check (probes dropped, service up) THEN the VIP fails open: all of them keep taking new flows, and the state and log say so', async () => {
    const lbIp = l2.lb.ip;
    const drop = `nft add table ip tula_test; nft add chain ip tula_test in '{ type filter hook input priority 0; }'; nft add rule ip tula_test in ip saddr ${lbIp} tcp dport 80 drop`;
    await Promise.all(l2.backends.map((b) => sh(b, drop)));
    try {
      const deadline = Date.now() + DOWN_BOUND_MS + 3000;
      let state = await runtimeState();
      while (!state.pools[0].failOpen) {
        if (Date.now() > deadline) throw new Error(`no fail open: ${JSON.stringify(state.pools)}`);
        await new Promise((r) => setTimeout(r, 100));
        state = await runtimeState();
      }
      expect(state.checks.every((c) => c.state === 'down')).toBe(true);
      expect(await slotBackends()).toEqual(['web1', 'web2', 'web3']);
      await expectServedBy(['web1', 'web2', 'web3']);
      expect(await sh(l2.lb, 'cat /var/log/tula-dsr-runtime.log')).toMatch(/every backend failed its check; sending to all of them \(fail open\)/);
    } finally {
      await Promise.all(l2.backends.map((b) => sh(b, 'nft delete table ip tula_test')));
    }
    await timeUntil('fail open ends', (b) => b.length === 3, UP_BOUND_MS);
    const deadline = Date.now() + UP_BOUND_MS + 3000;
    while ((await runtimeState()).pools[0].failOpen) {
      if (Date.now() > deadline) throw new Error('fail open did not end');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  test('GIVEN web2 is down WHEN the stack is applied again (a weight changes) THEN the apply leaves web2 out, and a runtime killed with SIGKILL comes back with the same view', async () => {
    await l2.stopServer('web2');
    await timeUntil('web2 out of the slots', (b) => !b.includes('web2'), DOWN_BOUND_MS);
    try {
      // a watcher on the balancer samples the slot table every 20 ms during the apply: web2 must never appear
      const watcher = l2.lb.spawn([
        'sh',
        '-c',
        `while :; do l=$(nft list map netdev tula_dsr slots_l2_rt 2>/dev/null); case "$l" in *${macs.web2}*) echo "SEEN at $(date +%s.%N):" $l;; esac; sleep 0.02; done`,
      ]);
      const marks = [`apply from ${Date.now() / 1000}`];
      await applyExample(ws, { ...OPTIONS, weights: { web1: 2, web2: 1, web3: 1 } });
      marks.push(`apply done at ${Date.now() / 1000}`);
      expect(await slotBackends()).toEqual(['web1', 'web3']);
      await expectServedBy(['web1', 'web3']);

      const child = Number((await sh(l2.lb, `pgrep -f 'node /usr/local/lib/tula-dsr/[t]ula-dsr-runtime.js'`)).trim().split('\n')[0]);
      marks.push(`SIGKILL at ${Date.now() / 1000}`);
      await sh(l2.lb, `kill -KILL ${child}`);
      const deadline = Date.now() + 5000;
      let restarted = '';
      while (!restarted) {
        if (Date.now() > deadline) throw new Error('the supervisor did not restart the runtime within 5 s');
        await new Promise((r) => setTimeout(r, 100));
        restarted = (await l2.lb.exec(`pgrep -f 'node /usr/local/lib/tula-dsr/[t]ula-dsr-runtime.js'`)).stdout.trim();
      }
      marks.push(`restarted at ${Date.now() / 1000}`);
      expect(Number(restarted)).not.toBe(child);
      await new Promise((r) => setTimeout(r, 1500));
      await watcher.stop('SIGKILL');
      const seen = watcher.stdoutText();
      // what it takes to tell a fail open from a lost view: when, what the slots held, and the runtime's own account
      if (seen) throw new Error(`web2 was in the slot table:\n${seen}${marks.join('\n')}\nthe runtime's log:\n${await runtimeLog()}`);
      expect(await slotBackends()).toEqual(['web1', 'web3']);
      expect((await runtimeState()).pools[0].down).toEqual([l2.backends[1].ip]);
    } finally {
      await l2.startServer('web2');
    }
    await timeUntil('web2 back in the slots', (b) => b.includes('web2'), UP_BOUND_MS);
  });

  test('GIVEN a service bound to the VIP only WHEN it is checked on its own port THEN the probe reaches it through the VIP, and it fails when that service stops', async () => {
    // a TCP server bound to the web VIP on port 9090, on web1 only: the VIP is on web1's lo since the apply
    const server = l2.backends[0].spawn([
      l2.python,
      '-c',
      `import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('${l2.vips.web}',9090))\ns.listen(64)\nprint('READY',flush=True)\nwhile True:\n  c,_=s.accept(); c.close()`,
    ]);
    try {
      // the backend's own address does not answer on 9090: only a probe through the VIP can pass
      expect((await l2.lb.exec(`timeout 2 bash -c 'echo > /dev/tcp/${l2.backends[0].ip}/9090'`)).code).not.toBe(0);
      await applyExample(ws, { ...OPTIONS, healthCheck: { kind: 'tcp', port: 9090, intervalSec: 0.5, timeoutSec: 0.3, fall: 3, rise: 2 } });
      // web2 and web3 have nothing on 9090: they go down; web1 passes through the VIP
      const ms = await timeUntil('only web1 in the slots', (b) => b.join() === 'web1', DOWN_BOUND_MS + 2000);
      console.log(`VIP-bound service: web1 up through the VIP, the others out after ${ms} ms`);
      await expectServedBy(['web1']);
      await server.stop('SIGKILL');
      // now every backend fails: fail open
      await timeUntil('fail open', (b) => b.length === 3, DOWN_BOUND_MS);
    } finally {
      await server.stop('SIGKILL');
    }
  });

  test('GIVEN health-driven slot changes THEN check reports in sync; GIVEN the runtime stopped THEN check exits 2 naming it, and apply starts it again', async () => {
    // the VIP-bound test left every backend down (fail open) and the slots rewritten by the runtime: not drift
    const inSync = await ws.agent('check');
    expect(inSync.stdout).toMatch(/^lb\s+: ok=\d+ changed=0 failed=0/m);
    expect(inSync.code).toBe(0);

    await sh(l2.lb, `kill -TERM $(cat ${RUNTIME_PID_FILE})`);
    const check = await ws.agent('check');
    expect(check.code).toBe(2);
    expect(check.stdout).toContain('changed: lb balancer runtime (supervised by tula-dsr) (started)');
    expectOk('tula-dsr apply', await ws.agent('apply'));
    expect((await l2.lb.exec(`pgrep -f 'node /usr/local/lib/tula-dsr/[t]ula-dsr-runtime.js'`)).stdout.trim()).not.toBe('');
    expect((await ws.agent('check')).code).toBe(0);
  });

  test('GIVEN another runtime program on the balancer (an older tula-dsr) WHEN applied THEN the bundle is replaced and the runtime restarted with it', async () => {
    const runtimePid = async () => (await l2.lb.exec(`pgrep -f 'node /usr/local/lib/tula-dsr/[t]ula-dsr-runtime.js'`)).stdout.trim();
    const before = await runtimePid();
    await sh(l2.lb, `echo '// an older build' >> /usr/local/lib/tula-dsr/tula-dsr-runtime.js`);
    const applied = await ws.agent('apply');
    expectOk('tula-dsr apply', applied);
    expect(applied.stdout).toContain('changed: lb file /usr/local/lib/tula-dsr/tula-dsr-runtime.js (content differs)');
    expect(applied.stdout).toContain('changed: lb balancer runtime (supervised by tula-dsr) (restarted: a new runtime)');
    // the supervisor starts the new program a second after the old one ended
    const deadline = Date.now() + 5000;
    let after = '';
    while (!after || after === before) {
      if (Date.now() > deadline) throw new Error(`the runtime was not restarted (pid ${before} → ${after || 'none'})`);
      await new Promise((r) => setTimeout(r, 100));
      after = await runtimePid();
    }
    expect((await sh(l2.lb, 'tail -c 40 /usr/local/lib/tula-dsr/tula-dsr-runtime.js')).includes('an older build')).toBe(false);
    expect((await runtimeState()).pid).toBeGreaterThan(0);
    expect((await ws.agent('check')).code).toBe(0);
  });

  test('GIVEN the stack is destroyed THEN the runtime, its probe routing and its files are gone', async () => {
    expectOk('terraform destroy', await ws.terraform(['destroy', '-auto-approve', '-input=false', '-no-color']));
    expect((await l2.lb.exec(`pgrep -f '[t]ula-dsr-runtime|[r]untime-supervisor'`)).stdout.trim()).toBe('');
    expect(await sh(l2.lb, 'ip rule show')).not.toMatch(/lookup 61000/);
    expect(await sh(l2.lb, 'nft list tables')).toBe('');
    expect((await l2.lb.exec('ls /usr/local/lib/tula-dsr /etc/tula-dsr /var/lib/tula-dsr /var/log/tula-dsr-runtime.log 2>&1')).stdout).not.toMatch(
      /\.js|\.json|\.sh|runtime\.log$/m,
    );
  });
});
