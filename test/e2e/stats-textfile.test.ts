/**
 * The statistics textfile end to end on the L2 namespace lab: the example stack with `statsTextfile` set (and no
 * health checks, so the textfile alone brings the runtime), deployed with the real terraform; the runtime (under the
 * agent's supervisor: the lab has no systemd) samples the balancer locally every `statsIntervalSec` and writes the
 * file node_exporter's textfile collector reads. Real HTTP traffic through the 1:2:3 VIP must show up in the file as
 * 100/200/300 new flows, and the file must pass the real promtool. A folder that does not exist fails the apply and
 * leaves the balancer as it was; a moved textfile, a dropped one and `terraform destroy` leave no file behind.
 *
 * Needs root, terraform and promtool; without them every test here fails (none is skipped).
 */
import { spawnSync } from 'node:child_process';
import { createL2Lab, L2Lab } from '../../lab/l2/lab';
import { RunResult, Workspace } from '../../lab/l2/deploy';
import { httpBurst } from '../../lab/l2/traffic';
import type { ExampleOptions } from '../../lab/example-stack';
import { DEFAULT_TEXTFILE_PATH, RUNTIME_LOG_FILE, RUNTIME_PID_FILE } from '../../model';
import { deployExample, expectOk, sh } from '../support/lab-run';

jest.setTimeout(120_000);

const INTERVAL_SEC = 2;
const FOLDER = '/var/lib/prometheus/node-exporter';
const MOVED = `${FOLDER}/dsr_lb.prom`;
const WEB = { backends: ['web1', 'web2', 'web3'], weights: { web1: 1, web2: 2, web3: 3 } } as const;
const WITH_TEXTFILE: ExampleOptions = { ...WEB, statsTextfile: true, statsIntervalSec: INTERVAL_SEC };

let l2: L2Lab;
let ws: Workspace;

async function apply(options: ExampleOptions): Promise<RunResult> {
  ws.synth(options);
  return ws.terraform(['apply', '-auto-approve', '-input=false', '-no-color']);
}

/** The textfile on the balancer, or null when there is none. */
async function textfile(path = DEFAULT_TEXTFILE_PATH): Promise<string | null> {
  const r = await l2.lb.exec(['cat', path]);
  return r.code === 0 ? r.stdout : null;
}

const runtimeLog = async () => (await l2.lb.exec(`tail -n 20 ${RUNTIME_LOG_FILE}; ls -la ${FOLDER}; ps -ef | grep [t]ula`)).stdout;

/** Polls the textfile every 100 ms until `done` holds; the text and how long it took, or a failure with the runtime's log. */
async function waitForText(what: string, done: (text: string | null) => boolean, boundMs: number, path = DEFAULT_TEXTFILE_PATH) {
  const started = Date.now();
  for (;;) {
    const text = await textfile(path);
    if (done(text)) return { text: text!, ms: Date.now() - started };
    if (Date.now() - started > boundMs)
      throw new Error(`${what}: not within ${boundMs} ms; the file holds:\n${text}\nthe runtime's log:\n${await runtimeLog()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The pool series of the web VIP's backends for one metric, by backend name. */
function webPoolSeries(text: string, metric: string): Record<string, number> {
  const pool = /^tula_dsr_vip_info\{vip="web",pool="([0-9a-f]{8})"/m.exec(text)?.[1];
  const series: Record<string, number> = {};
  for (const m of text.matchAll(new RegExp(`^${metric}\\{pool="${pool}",backend="(\\w+)",[^}]*\\} (\\d+)$`, 'gm'))) series[m[1]] = Number(m[2]);
  return series;
}

const sampleTime = (text: string | null) => Number(/^tula_dsr_sample_timestamp_seconds (\S+)$/m.exec(text ?? '')?.[1] ?? NaN);
/** The runtime's processes on the balancer: the PID namespace is the machine's, where other labs may run theirs. */
const runtimeProcesses = async () =>
  (
    await l2.lb.exec(
      `for p in $(pgrep -f '[t]ula-dsr-runtime|[r]untime-supervisor'); do [ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/$$/ns/net)" ] && echo $p; done; true`,
    )
  ).stdout.trim();

beforeAll(async () => {
  l2 = await createL2Lab({ backends: 3 });
  // node_exporter's textfile folder, as the prometheus-node-exporter package creates it (the lab host's /var is its own)
  await sh(l2.lb, `mkdir -p ${FOLDER}`);
  ws = await deployExample(l2, WITH_TEXTFILE);
}, 90_000);

afterAll(async () => {
  await l2?.teardown();
  ws?.remove();
});

describe('the statistics textfile on the L2 lab', () => {
  test('GIVEN statsTextfile true and no health checks WHEN applied THEN the runtime runs under the supervisor for the textfile alone and writes it, readable by node_exporter, every statsIntervalSec', async () => {
    const pid = Number((await sh(l2.lb, `cat ${RUNTIME_PID_FILE}`)).trim());
    expect(await sh(l2.lb, `tr '\\0' ' ' < /proc/${pid}/cmdline`)).toContain('runtime-supervisor.sh');
    expect((await runtimeProcesses()).split('\n')).toHaveLength(2);
    const first = await waitForText('the first write', (t) => t !== null, 5000);
    expect((await sh(l2.lb, `stat -c '%a %U' ${DEFAULT_TEXTFILE_PATH}`)).trim()).toBe('644 root');
    const next = await waitForText('the next write', (t) => sampleTime(t) > sampleTime(first.text), (INTERVAL_SEC + 2) * 1000);
    const gap = sampleTime(next.text) - sampleTime(first.text);
    expect(gap).toBeGreaterThan(INTERVAL_SEC - 0.5);
    expect(gap).toBeLessThan(INTERVAL_SEC + 1);
    // no temp file is left in node_exporter's folder (it would read any *.prom)
    expect((await sh(l2.lb, `ls -A ${FOLDER}`)).trim()).toBe('tula_dsr.prom');
  });

  test('GIVEN 600 requests through the 1:2:3 VIP WHEN the runtime writes next THEN the textfile says 100/200/300 new flows, all ended by the client, and the real promtool accepts it', async () => {
    const burst = await httpBurst(l2.client, l2.python, { host: l2.vips.web, port: 80, count: 600, concurrency: 4 });
    expect({ failures: burst.failures, counts: burst.counts }).toEqual({ failures: 0, counts: { web1: 100, web2: 200, web3: 300 } });
    const sent = Date.now() / 1000;
    const { text, ms } = await waitForText(
      'the 600 new flows in the textfile',
      (t) => sampleTime(t) > sent && Object.values(webPoolSeries(t ?? '', 'tula_dsr_pool_backend_connections_total')).reduce((a, n) => a + n, 0) === 600,
      (INTERVAL_SEC + 2) * 1000,
    );
    expect(webPoolSeries(text, 'tula_dsr_pool_backend_connections_total')).toEqual({ web1: 100, web2: 200, web3: 300 });
    expect(webPoolSeries(text, 'tula_dsr_pool_backend_connections_ended_total')).toEqual({ web1: 100, web2: 200, web3: 300 });
    expect(webPoolSeries(text, 'tula_dsr_pool_backend_weight')).toEqual({ web1: 1, web2: 2, web3: 3 });
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect({ status: promtool.status, out: `${promtool.stdout}${promtool.stderr}` }).toEqual({ status: 0, out: '' });
    process.stdout.write(
      `textfile after 600 requests: new flows ${JSON.stringify(webPoolSeries(text, 'tula_dsr_pool_backend_connections_total'))}, in the file ${ms} ms after the burst (interval ${INTERVAL_SEC} s)\n`,
    );
  });

  test('GIVEN a textfile folder that does not exist WHEN applied THEN the apply fails before any change, naming the folder, and the runtime goes on writing the old file', async () => {
    const pid = (await sh(l2.lb, `cat ${RUNTIME_PID_FILE}`)).trim();
    const before = sampleTime(await textfile());
    const r = await apply({ ...WITH_TEXTFILE, statsTextfile: '/var/lib/no-exporter/tula_dsr.prom' });
    expect(r.code).not.toBe(0);
    expect(`${r.stdout}\n${r.stderr}`).toContain(
      "failed: lb statistics textfile /var/lib/no-exporter/tula_dsr.prom (the folder /var/lib/no-exporter does not exist on lb; install node_exporter's textfile collector there (Debian: apt-get install prometheus-node-exporter), create the folder, or choose another statsTextfile)\n",
    );
    expect((await sh(l2.lb, `cat ${RUNTIME_PID_FILE}`)).trim()).toBe(pid);
    expect((await l2.lb.exec('ls /var/lib/no-exporter')).code).not.toBe(0);
    await waitForText('a write after the failed apply', (t) => sampleTime(t) > before, (INTERVAL_SEC + 2) * 1000);
    expectOk('terraform apply (back to the default textfile)', await apply(WITH_TEXTFILE));
  });

  test('GIVEN a written textfile and a runtime that died (SIGKILL, as a host without systemd after a crash) WHEN statsTextfile moves THEN the apply removes the old file, which no runtime knows of any more, and the new runtime writes the new one', async () => {
    expect(await textfile()).not.toBeNull();
    const pids = (await runtimeProcesses()).split('\n');
    expect(pids).toHaveLength(2);
    await sh(l2.lb, `kill -KILL ${pids.join(' ')}`);
    expect(await runtimeProcesses()).toBe('');
    const r = await apply({ ...WITH_TEXTFILE, statsTextfile: MOVED });
    expectOk('terraform apply (moved textfile)', r);
    expect(r.stdout).toContain(`changed: lb statistics textfile ${DEFAULT_TEXTFILE_PATH} (replaced by ${MOVED}: removed)\n`);
    await waitForText('the moved textfile', (t) => t !== null, (INTERVAL_SEC + 2) * 1000, MOVED);
    expect(await textfile()).toBeNull();
    // and it stays gone: nothing writes it any more
    await new Promise((r) => setTimeout(r, (INTERVAL_SEC + 0.5) * 1000));
    expect((await sh(l2.lb, `ls -A ${FOLDER}`)).trim()).toBe('dsr_lb.prom');
  });

  test('GIVEN the textfile is the only reason for the runtime WHEN statsTextfile is removed THEN the runtime stops and its textfile is gone', async () => {
    expectOk('terraform apply (no textfile)', await apply(WEB));
    expect(await runtimeProcesses()).toBe('');
    expect((await sh(l2.lb, `ls -A ${FOLDER}`)).trim()).toBe('');
  });

  test('GIVEN the textfile again WHEN the stack is destroyed THEN the runtime, its textfile and its log are gone', async () => {
    expectOk('terraform apply (textfile again)', await apply(WITH_TEXTFILE));
    await waitForText('the textfile again', (t) => t !== null, (INTERVAL_SEC + 3) * 1000);
    expectOk('terraform destroy', await ws.terraform(['destroy', '-auto-approve', '-input=false', '-no-color']));
    expect(await runtimeProcesses()).toBe('');
    expect((await sh(l2.lb, `ls -A ${FOLDER}`)).trim()).toBe('');
    expect((await l2.lb.exec(['test', '-e', RUNTIME_LOG_FILE])).code).toBe(1);
  });
});
