/**
 * What the flow copy between pair members costs, on a pair member's real table in a throwaway network namespace:
 *
 *  - one round of the sender (every 200 ms): listing `recent_l2_tcp` and taking the listed entries out, with 0, 100
 *    and 1,000 new flows since the last round, beside a flow map of `flows` entries (a busy balancer), and one listing
 *    of that whole flow map (the full copy at each (re)connect);
 *  - the receiver's write of 5,000 flows (one message) and of the whole flow map (a full copy, 5,000 per message).
 *
 *   node dist/bench/flow-copy.js [--flows N] [--runs N]
 *
 * Flows are written straight into the maps (192.0.2.0/24 clients); no traffic is sent.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BALANCER_TABLE, FlowEntry, StrictSpecSchemas, balancerNeedsRuntime, planBalancerHost, renderNftReload } from '../model';
import { forgetCommands, listCommands, listFlows, parseFlowListing, writeFlows } from '../runtime/flow-copy/flow-maps';
import { systemNftLister } from '../runtime/flow-copy/service';
import { systemNft } from '../runtime/nft';
import { Stat, stat } from './stats';
import { primarySide } from '../lab/pair-spec';

const NS = `tula-b-${randomBytes(3).toString('hex')}-fc`;
const VIP = '10.0.1.100';
const MACS = ['02:00:0a:00:01:0b', '02:00:0a:00:01:0c', '02:00:0a:00:01:0d'];
const FRESH = { exists: false, counters: [], maps: [], sets: [], chains: [], sizes: {}, hooks: {} };

function must(argv: string[], input?: string): string {
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const flow = (i: number): FlowEntry & { timeoutSec: number } => ({
  map: 'flows_l2_tcp',
  saddr: `192.0.${2 + Math.floor(i / 60000)}.${(i % 250) + 1}`,
  sport: 1024 + (Math.floor(i / 250) % 60000),
  daddr: VIP,
  dport: 80,
  value: MACS[i % 3],
  timeoutSec: 300,
});

function fill(map: string, from: number, count: number, dir: string): void {
  for (let start = from; start < from + count; start += 20000) {
    const n = Math.min(20000, from + count - start);
    const elements = Array.from({ length: n }, (_, k) => {
      const e = flow(start + k);
      return `${e.saddr} . ${e.sport} . ${e.daddr} . ${e.dport} : ${e.value}`;
    });
    const file = join(dir, `fill-${map}-${start}.nft`);
    writeFileSync(file, `add element netdev ${BALANCER_TABLE} ${map} { ${elements.join(', ')} }\n`);
    must(['ip', 'netns', 'exec', NS, 'nft', '-f', file]);
  }
}

async function timed(runs: number, task: () => Promise<unknown>): Promise<Stat> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await task();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return stat(samples);
}

export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  const arg = (name: string, fallback: number) => {
    const i = argv.indexOf(name);
    return i >= 0 ? Number(argv[i + 1]) : fallback;
  };
  const flows = arg('--flows', 100_000);
  const runs = arg('--runs', 20);
  if (process.getuid?.() !== 0) throw new Error('the flow copy bench needs root (a network namespace, nft)');
  const dir = mkdtempSync(join(tmpdir(), 'tula-bench-flow-copy-'));
  const spec = pairMemberOf(specOf());
  if (!balancerNeedsRuntime(spec)) throw new Error('a pair member runs the runtime');
  const load = () =>
    loadavg()
      .map((l) => l.toFixed(1))
      .join(', ');
  const started = load();
  try {
    must(['ip', 'netns', 'add', NS]);
    must(['ip', '-n', NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
    must(['ip', '-n', NS, 'link', 'set', 'eth0', 'up']);
    must(
      ['ip', 'netns', 'exec', NS, 'nft', '-f', '-'],
      renderNftReload(planBalancerHost(spec, { interfaceMac: '02:00:0a:00:01:02', backendMacs: {} }).table, FRESH),
    );
    fill('flows_l2_tcp', 0, flows, dir);
    const lister = systemNftLister(['ip', 'netns', 'exec', NS]);
    const rows: string[] = [];
    // one sender round: list the recent map, then take what it listed out of it (forgetCommands); the recent map
    // then holds the flows of one round: 100 entries = 500 new flows/s
    for (const recent of [0, 100, 1000]) {
      let listed = 0;
      const s = await timed(runs, async () => {
        if (recent) {
          const elements = Array.from({ length: recent }, (_, k) => {
            const e = flow(flows + k);
            return `${e.saddr} . ${e.sport} . ${e.daddr} . ${e.dport} : ${e.value}`;
          });
          must(['ip', 'netns', 'exec', NS, 'nft', `add element netdev ${BALANCER_TABLE} recent_l2_tcp { ${elements.join(', ')} }`]);
        }
        const cpu = childCpuMs();
        const entries = parseFlowListing(await lister(listCommands(['recent_l2_tcp'])));
        listed = entries.length;
        if (entries.length) await lister(forgetCommands(entries.map((entry) => ({ map: 'recent_l2_tcp', entry }))));
        roundCpu.push(childCpuMs() - cpu);
      });
      if (listed !== recent) throw new Error(`listed ${listed} recent flows, expected ${recent}`);
      const cpu = stat(roundCpu.splice(0));
      rows.push(
        `| one round (list recent_l2_tcp + take the listed out), ${recent} new flows (${recent * 5}/s) | ${fmt(s)} (includes writing them) | ${cpu.median.toFixed(0)} ms CPU per round: ${((cpu.median * 5) / 10).toFixed(1)} % of a core at 5 rounds/s |`,
      );
    }
    let all = 0;
    const full = await timed(3, async () => (all = (await listFlows(lister, ['flows_l2_tcp'])).length));
    if (all !== flows) throw new Error(`listed ${all} flows, expected ${flows}`);
    rows.push(`| list flows_l2_tcp, ${flows} entries (full copy, once per session) | ${fmt(full)} | |`);
    const nft = systemNft(join(dir, 'lock'), ['ip', 'netns', 'exec', NS]);
    const batch = Array.from({ length: 5000 }, (_, k) => flow(k));
    rows.push(`| write 5,000 received flows (one message, all present: renewed) | ${fmt(await timed(5, () => writeFlows(nft, batch)))} | |`);
    must(['ip', 'netns', 'exec', NS, 'nft', 'flush', 'map', 'netdev', BALANCER_TABLE, 'flows_l2_tcp']);
    const whole = await timed(1, async () => {
      for (let start = 0; start < flows; start += 5000)
        await writeFlows(
          nft,
          Array.from({ length: Math.min(5000, flows - start) }, (_, k) => flow(start + k)),
        );
    });
    rows.push(`| write a full copy of ${flows} flows (5,000 per message, none present) | ${fmt(whole)} | |`);
    process.stdout.write(
      [
        `flow copy bench (${flows} flows in flows_l2_tcp, load averages ${started} at the start, ${load()} at the end)`,
        '| what | median (min–max) | CPU at that rate |',
        '|---|---|---|',
        ...rows,
        '',
      ].join('\n'),
    );
  } finally {
    spawnSync('ip', ['netns', 'del', NS]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const roundCpu: number[] = [];

/** CPU time of this process's finished children (utime + stime, /proc/self/stat fields 16 and 17), in ms. */
function childCpuMs(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8')
    .replace(/^.*\) /, '')
    .split(' ');
  // after "(comm) ", field 3 is index 0: cutime and cstime are fields 16 and 17
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100;
}

const fmt = (s: Stat) => `${s.median.toFixed(1)} ms (${s.min.toFixed(1)}–${s.max.toFixed(1)}, n=${s.runs})`;

/** The lab's pair member, with one L2 VIP on three backends. */
function specOf() {
  return StrictSpecSchemas.BalancerSpecSchema.parse({
    kind: 'balancer',
    path: 'bench/lb1',
    name: 'lb1',
    ssh: { host: '10.0.1.2', hostKey: `SHA256:${'A'.repeat(43)}` },
    interface: 'eth0',
    address: '10.0.1.2',
    subnet: '10.0.1.0/24',
    vips: [
      {
        path: 'bench/web',
        name: 'web',
        ip: VIP,
        port: 80,
        backends: MACS.map((mac, i) => ({ path: `bench/web/be${i + 1}`, name: `be${i + 1}`, ip: `10.0.1.${11 + i}`, mac })),
      },
    ],
  });
}
function pairMemberOf(spec: ReturnType<typeof specOf>) {
  return { ...spec, pair: primarySide('10.0.1.3', `SHA256:${'A'.repeat(43)}`, 'bench/edge') };
}

if (require.main === module) {
  main().catch((error: Error) => {
    process.stderr.write(`flow copy bench: ${error.message}\n`);
    process.exit(1);
  });
}
