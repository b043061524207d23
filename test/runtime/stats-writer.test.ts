/**
 * The runtime's statistics writer on a real balancer table: a lab host (its own network, mount and UTS namespaces)
 * holds the table the model renders, a client sends it real datagrams, and the writer runs the sample script there
 * (as the runtime runs it on its balancer), builds the snapshot with the runtime's own view and writes the textfile.
 * What is checked: the figures, that the view is the runtime's and not the (older) state file on the host, promtool,
 * a failure logged once per distinct message and retried, a moved or dropped textfile removed, and a sample taken
 * before a stop or a new configuration never written.
 *
 * Needs root (network namespaces, nft) and promtool; without them every test here fails (none is skipped).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { BalancerSpec, RUNTIME_STATE_FILE, RuntimeState, groupPools, planBalancerHost, poolName, renderNftReload } from '../../model';
import type { LogLevel } from '../../runtime/log';
import type { CommandRunner } from '../../runtime/probe-routing';
import { StatsSource, StatsWriter, StatsWriterDeps } from '../../runtime/stats-writer';
import { writeStatsTextfile } from '../../runtime/textfile';
import { FRESH, balancerSpec, factsFor } from '../support/render-fixtures';
import { sh } from '../support/lab-run';

jest.setTimeout(60_000);

const VIP = '10.0.1.101';
const spec: BalancerSpec = balancerSpec([
  {
    name: 'dns',
    ip: VIP,
    port: 53,
    protocol: 'udp',
    algorithm: 'round-robin',
    backends: [
      { name: 'be1', ip: '10.0.1.11' },
      { name: 'be2', ip: '10.0.1.12' },
      { name: 'be3', ip: '10.0.1.13' },
    ],
  },
]);
const pools = groupPools(spec.vips);
const POOL = poolName(pools[0].id);
const NOW = Math.floor(Date.now() / 1000);

/** The runtime's view: be2 failed its check a minute ago. */
const runtimeView: RuntimeState = {
  version: 1,
  config: 'a'.repeat(64),
  pid: 4242,
  startedAt: NOW - 600,
  updatedAt: NOW,
  checks: ['10.0.1.11', '10.0.1.12', '10.0.1.13'].map((backend) => ({
    backend,
    check: 'udp/53 payload=00 interval=2 timeout=1 fall=3 rise=2',
    kind: 'udp' as const,
    vip: 'dns',
    state: backend === '10.0.1.12' ? ('down' as const) : ('up' as const),
    since: NOW - 60,
  })),
  pools: [{ id: POOL, vips: ['dns'], down: ['10.0.1.12'], failOpen: false, changedAt: NOW - 60 }],
};
/** What the state file on the host still says (it is rewritten only every 5 s): every backend up. */
const fileView: RuntimeState = {
  ...runtimeView,
  checks: runtimeView.checks.map((c) => ({ ...c, state: 'up' as const })),
  pools: [{ ...runtimeView.pools[0], down: [] }],
};

let lab: Lab;
let lb: LabHost;
let client: LabHost;
let dir: string;
let logged: string[];

/** The sample script runs inside the balancer host, as the runtime runs it on its own balancer. */
const onBalancer: CommandRunner = async (argv, input) => lb.exec(argv, input);

/** Every writer a test made: stopped after each test, so that a failed one leaves no timer running. */
const writers: StatsWriter[] = [];

function writer(deps: Partial<StatsWriterDeps> = {}): StatsWriter {
  const source: StatsSource = { spec, pools, state: () => runtimeView };
  const made = new StatsWriter(() => source, { log: (level: LogLevel, message: string) => logged.push(`${level}: ${message}`), run: onBalancer, ...deps });
  writers.push(made);
  return made;
}

async function loadTable(): Promise<void> {
  const r = await lb.exec(['nft', '-f', '-'], renderNftReload(planBalancerHost(spec, factsFor(spec)).table, FRESH));
  if (r.code !== 0) throw new Error(`nft -f: ${r.stderr}`);
}

const promtool = (text: string) => {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};

beforeAll(async () => {
  lab = await createLab({
    hosts: [
      { name: 'client', sshd: false },
      { name: 'lb', sshd: false },
    ],
  });
  ({ client, lb } = lab.hosts);
  await loadTable();
  await sh(lb, `mkdir -p /var/lib/tula-dsr && cat > ${RUNTIME_STATE_FILE} <<'EOF'\n${JSON.stringify(fileView)}\nEOF`);
  // three datagrams to the VIP through the balancer's ingress, each from a socket of its own: three new flows
  await sh(client, `ip route add 10.0.1.0/24 dev eth0 && ip neigh replace ${VIP} lladdr ${lb.mac} dev eth0`);
  await sh(
    client,
    `for i in 1 2 3; do printf 'q%s' "$i" | python3 -c 'import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.stdin.buffer.read(), ("${VIP}", 53))'; done`,
  );
});

afterAll(async () => {
  await lab?.teardown();
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tula-stats-writer-'));
  logged = [];
});
afterEach(() => {
  for (const w of writers.splice(0)) w.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('StatsWriter', () => {
  test("GIVEN datagrams through the VIP and the runtime's view of be2 as down WHEN it writes once THEN the file holds the kernel's counters and the runtime's own view (not the state file's), and promtool accepts it", async () => {
    const path = join(dir, 'tula_dsr.prom');
    const w = writer();
    await w.configure({ path, intervalSec: 3600 });
    w.stop();
    const text = readFileSync(path, 'utf8');
    expect(promtool(text)).toEqual({ status: 0, out: '' });
    const vipLabels = `vip="dns",pool="${POOL}",local_address="${VIP}",local_port="53",proto="UDP"`;
    expect(text).toContain(`tula_dsr_vip_packets_total{${vipLabels}} 3\n`);
    const lines = (metric: string) => text.split('\n').filter((l) => l.startsWith(`${metric}{`));
    expect(lines('tula_dsr_pool_backend_connections_total')).toEqual(
      ['be1', 'be2', 'be3'].map(
        (b, i) => `tula_dsr_pool_backend_connections_total{pool="${POOL}",backend="${b}",remote_address="10.0.1.1${i + 1}",proto="UDP"} 1`,
      ),
    );
    expect(lines('tula_dsr_pool_backend_up')).toEqual(
      ['be1', 'be2', 'be3'].map(
        (b, i) => `tula_dsr_pool_backend_up{pool="${POOL}",backend="${b}",remote_address="10.0.1.1${i + 1}",proto="UDP"} ${i === 1 ? 0 : 1}`,
      ),
    );
    // the sample's time is the balancer's clock after the listing
    const stamp = Number(/^tula_dsr_sample_timestamp_seconds (\S+)$/m.exec(text)?.[1]);
    expect(Math.abs(stamp - Date.now() / 1000)).toBeLessThan(10);
    expect(logged).toEqual([`info: statistics textfile ${path}: written every 3600 s`]);
  });

  test('GIVEN a folder that does not exist WHEN three intervals fail THEN one error is logged; WHEN the folder appears THEN the next interval writes and says so once', async () => {
    const path = join(dir, 'node-exporter', 'tula_dsr.prom');
    const w = writer();
    await w.configure({ path, intervalSec: 3600 });
    expect([await w.writeOnce(), await w.writeOnce()]).toEqual([false, false]);
    const error = `error: statistics textfile ${path}: cannot write the statistics textfile ${path}: the folder ${join(dir, 'node-exporter')} does not exist (is node_exporter's textfile collector set up?) (retried every 3600 s; logged again when the error changes)`;
    expect(logged).toEqual([`info: statistics textfile ${path}: written every 3600 s`, error]);
    mkdirSync(join(dir, 'node-exporter'));
    expect([await w.writeOnce(), await w.writeOnce()]).toEqual([true, true]);
    w.stop();
    expect(logged.slice(2)).toEqual([`info: statistics textfile ${path}: written again`]);
    expect(promtool(readFileSync(path, 'utf8')).status).toBe(0);
  });

  test('GIVEN a failing write WHEN the error changes (the table is gone) THEN the new error is logged too, once', async () => {
    const path = join(dir, 'missing', 'tula_dsr.prom');
    const w = writer();
    await w.configure({ path, intervalSec: 3600 });
    await sh(lb, 'nft delete table netdev tula_dsr');
    try {
      await w.writeOnce();
      await w.writeOnce();
    } finally {
      w.stop();
      await loadTable();
    }
    expect(logged.filter((l) => l.startsWith('error:'))).toEqual([
      `error: statistics textfile ${path}: cannot write the statistics textfile ${path}: the folder ${join(dir, 'missing')} does not exist (is node_exporter's textfile collector set up?) (retried every 3600 s; logged again when the error changes)`,
      `error: statistics textfile ${path}: the balancer has no nft table netdev tula_dsr: apply the stack first (retried every 3600 s; logged again when the error changes)`,
    ]);
  });

  test('GIVEN a written textfile WHEN a new configuration moves it THEN the old file is removed and the new one written; WHEN one drops it THEN that file is removed and nothing more is written', async () => {
    const first = join(dir, 'first.prom');
    const second = join(dir, 'second.prom');
    const writes: string[] = [];
    const w = writer({
      write: (snapshot, path) => {
        writes.push(path);
        writeStatsTextfile(snapshot, path);
      },
    });
    await w.configure({ path: first, intervalSec: 3600 });
    expect(existsSync(first)).toBe(true);
    const moved = w.configure({ path: second, intervalSec: 3600 });
    expect(existsSync(first)).toBe(false);
    await moved;
    expect(existsSync(second)).toBe(true);
    await w.configure(null);
    expect(existsSync(second)).toBe(false);
    expect(await w.writeOnce()).toBe(false);
    expect(existsSync(second)).toBe(false);
    expect(logged.filter((l) => l.includes('removed'))).toEqual([
      `info: statistics textfile ${first}: removed (moved to ${second})`,
      `info: statistics textfile ${second}: removed (no longer configured)`,
    ]);
    expect(new Set(writes)).toEqual(new Set([first, second]));
  });

  test('GIVEN a sample in flight WHEN the runtime stops before it ends THEN it is not written, and a stop leaves the written file in place', async () => {
    const path = join(dir, 'tula_dsr.prom');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gated: CommandRunner = async (argv, input) => {
      const result = await lb.exec(argv, input);
      await gate;
      return result;
    };
    const w = writer({ run: gated });
    const first = w.configure({ path, intervalSec: 3600 });
    const inFlight = w.writeOnce();
    w.stop();
    release();
    await first;
    expect(await inFlight).toBe(false);
    expect(existsSync(path)).toBe(false);

    const kept = writer();
    await kept.configure({ path, intervalSec: 3600 });
    expect(existsSync(path)).toBe(true);
    kept.stop();
    expect(existsSync(path)).toBe(true);
  });

  test('GIVEN intervalSec 1 WHEN configured THEN it writes at once and then every second, each time with a later sample', async () => {
    const path = join(dir, 'tula_dsr.prom');
    const stamps: number[] = [];
    const w = writer({ write: (snapshot) => stamps.push(snapshot.sampledAt) });
    const started = Date.now();
    void w.configure({ path, intervalSec: 1 });
    try {
      while (stamps.length < 3 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 50));
    } finally {
      w.stop();
    }
    const took = Date.now() - started;
    expect(stamps).toHaveLength(3);
    expect(stamps[1]).toBeGreaterThan(stamps[0]);
    expect(stamps[2]).toBeGreaterThan(stamps[1]);
    // the first at once, two more one second apart: about 2 s, not 3
    expect(took).toBeGreaterThan(1900);
    expect(took).toBeLessThan(3500);
  });
});
