/**
 * Incremental balancer updates on the real kernel (real sshd, real nft): a change to one VIP is one transaction of
 * its elements while the table is as the last apply left it (the ruleset generation has not moved), and nothing else
 * in the table moves: every other element, element counter, named counter and flow is listed before and after. A
 * table changed behind tula-dsr's back is still found and repaired; a run that fails after its incremental update
 * puts the previous ruleset back exactly.
 */
import { NFT_GENERATION_COMMAND } from '../../agent/facts/nft-generation';
import { nftRecordListingCommand } from '../../agent/facts/gather';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { balancerSpec, leftovers, run, sh, VipInput, withWrappedTool } from './helpers';

jest.setTimeout(60_000);

const TABLE = 'netdev tula_dsr';
const STATE = '/var/lib/tula-dsr/balancer.json';
const GENERATION_FILE = '/var/lib/tula-dsr/netdev-tula_dsr.generation';
/** The transaction an incremental update loads (kept after the run: a failed run's tasks show no diff). */
const UPDATE_FILE = '/var/lib/tula-dsr/netdev-tula_dsr.update.nft';
/** The boot ruleset: the table the last apply loaded, which an incremental update reads back as its previous table. */
const BOOT_RULESET = '/etc/tula-dsr/balancer.nft';
const COUNT = 12;
const vipIp = (i: number) => `10.99.17.${i + 1}`;
const FLOW_TUPLES = Array.from({ length: 40 }, (_, i) => `10.99.18.${i + 1} . ${2000 + i} . ${vipIp(i % COUNT)} . 80`);

let lab: Lab;
let lb: LabHost;
let be1: LabHost;
let be2: LabHost;
let client: LabHost;

beforeAll(async () => {
  lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }, { name: 'be2' }, { name: 'client', sshd: false }] });
  ({ lb, be1, be2, client } = lab.hosts);
  await sh(client, `ip route add 10.99.17.0/24 via ${lb.ip}`);
});

afterAll(async () => {
  await lab?.teardown();
});

/** COUNT VIPs (or `count`) over be1 and be2; `heavy` gets be1 twice the weight of be2. */
function spec(heavy?: number, count = COUNT): Record<string, unknown> {
  const vips: VipInput[] = Array.from({ length: count }, (_, i) => ({
    name: `v${i}`,
    ip: vipIp(i),
    backends: [
      { name: 'be1', ip: be1.ip, weight: i === heavy ? 2 : 1 },
      { name: 'be2', ip: be2.ip, weight: 1 },
    ],
  }));
  return balancerSpec(lab, lb, vips);
}

/**
 * Each set and map of the table with its elements (element counters included), the chains with their handles, and
 * every named counter with its values.
 */
async function tableContents(): Promise<Record<string, string[]>> {
  const chains = [...(await sh(lb, 'nft -a list chains netdev')).matchAll(/chain (\S+) \{ # handle (\d+)/g)].map((m) => `chain ${m[1]} handle ${m[2]}`);
  const counters = [...(await sh(lb, `nft list counters table ${TABLE}`)).matchAll(/counter (\S+) \{\s*packets (\d+) bytes (\d+)/g)].map(
    (m) => `counter ${m[1]} packets ${m[2]} bytes ${m[3]}`,
  );
  const contents: Record<string, string[]> = { chains, counters };
  const sets = ['live_l2', 'pool_new_l2', 'pool_ended_l2', 'vip_stats_port'];
  for (const map of ['vip_pool_port', 'pool_chain', 'slots_l2', 'backend_counter_l2', 'flows_l2_tcp', ...sets]) {
    const listing = await sh(lb, `nft list ${sets.includes(map) ? 'set' : 'map'} ${TABLE} ${map}`);
    const body = /elements = \{([^}]*)\}/s.exec(listing)?.[1] ?? '';
    // a flow's remaining time is not the table's content
    contents[map] = body
      .split(/,\s+/)
      .map((e) =>
        e
          .replace(/ (timeout|expires) \S+/g, '')
          .replace(/\s+/g, ' ')
          .trim(),
      )
      .filter(Boolean)
      .sort();
  }
  return contents;
}

/** What changed between two listings: per object, the lines that went and those that came. */
function difference(before: Record<string, string[]>, after: Record<string, string[]>): Record<string, { gone: string[]; came: string[] }> {
  const out: Record<string, { gone: string[]; came: string[] }> = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const b = before[key] ?? [];
    const a = after[key] ?? [];
    const gone = b.filter((x) => !a.includes(x));
    const came = a.filter((x) => !b.includes(x));
    if (gone.length || came.length) out[key] = { gone, came };
  }
  return out;
}

/** A SYN to each VIP from the client: the balancer counts each in the VIP's counter and in its pool's new-flow set. */
async function synTo(indexes: readonly number[]): Promise<void> {
  const script = indexes.map((i) => `timeout 0.5 bash -c 'exec 3<>/dev/tcp/${vipIp(i)}/80' 2>/dev/null`).join('; ');
  await client.exec(`${script}; true`);
}

const synToEveryVip = () => synTo(Array.from({ length: COUNT }, (_, i) => i));

/** The packets VIP `i` has counted: its element of the VIP statistics set. */
async function vipPackets(i: number): Promise<number> {
  const listing = await sh(lb, `nft list set ${TABLE} vip_stats_port`);
  const counted = new RegExp(`${vipIp(i).replace(/\./g, '\\.')} \\. tcp \\. 80 counter packets (\\d+)`).exec(listing);
  if (!counted) throw new Error(`vip_stats_port has no element for ${vipIp(i)}:\n${listing}`);
  return Number(counted[1]);
}

const nftTask = (r: Awaited<ReturnType<typeof run>>) => r.tasks.find((t) => t.name.startsWith('nft table'))!;

/**
 * Makes the live table the previous release's (a named counter per VIP, v0's at 7 packets; the map that names them and
 * the scheduler rule that reads it; no statistics set) and records what that release recorded after its load: its
 * ruleset's hash `rulesetHash`, the generation, and the listing.
 */
async function loadPreviousRelease(rulesetHash: string): Promise<void> {
  const scheduler = /chain (\S+) \{[^}]*@vip_stats_port # handle (\d+)/.exec(await sh(lb, `nft -a list table ${TABLE}`))!;
  const named = Array.from({ length: COUNT }, (_, i) => `add counter ${TABLE} vip_v${i}${i === 0 ? ' { packets 7 bytes 420 }' : ''}`);
  const previous = [
    ...named,
    `add map ${TABLE} vip_counter_port { type ipv4_addr . inet_proto . inet_service : counter; size 64; }`,
    `add element ${TABLE} vip_counter_port { ${Array.from({ length: COUNT }, (_, i) => `${vipIp(i)} . tcp . 80 : vip_v${i}`).join(', ')} }`,
    `replace rule ${TABLE} ${scheduler[1]} handle ${scheduler[2]} counter name ip daddr . meta l4proto . th dport map @vip_counter_port`,
    `delete set ${TABLE} vip_stats_port`,
  ];
  await sh(lb, `printf '%s\\n' ${previous.map((l) => `'${l}'`).join(' ')} | nft -f -`);
  const listingHash = (await sh(lb, nftRecordListingCommand('netdev', 'tula_dsr'))).trim();
  await sh(
    lb,
    `sed -i -e 's/"rulesetHash": "[0-9a-f]*"/"rulesetHash": "${rulesetHash}"/' -e 's/"listingHash": "[^"]*"/"listingHash": "${listingHash}"/' ${STATE}`,
  );
  await sh(lb, `echo "$(${NFT_GENERATION_COMMAND}) ${rulesetHash}" > ${GENERATION_FILE}`);
}

describe('incremental balancer updates (real nft)', () => {
  test('GIVEN a balancer with open flows and counted traffic WHEN one VIP changes its weights THEN one transaction changes only its elements: every other element, counter and flow is as it was', async () => {
    expect((await run(spec(), 'apply')).error).toBeUndefined();
    await sh(lb, `nft add element ${TABLE} flows_l2_tcp { ${FLOW_TUPLES.map((t) => `${t} : ${be1.mac}`).join(', ')} }`);
    await synToEveryVip();
    // a run after another program's transaction (the flows written above) lists the table once and records the generation
    expect(nftTask(await run(spec(), 'apply'))).toMatchObject({
      status: 'ok',
      detail: expect.stringMatching(/^in sync \(listing as at the last apply; generation \d+ recorded\)$/),
    });
    const before = await tableContents();
    expect(before.vip_stats_port).toHaveLength(COUNT);
    // the SYNs were counted: a change that reset counters would show
    expect(before.vip_stats_port).toContainEqual(expect.stringMatching(/^10\.99\.17\.4 \. tcp \. 80 counter packets [1-9]/));
    expect(before.pool_new_l2).toContainEqual(expect.stringMatching(/counter packets [1-9]/));
    expect(before.flows_l2_tcp.length).toBeGreaterThanOrEqual(FLOW_TUPLES.length);

    const result = await run(spec(3), 'apply');

    expect(result.error).toBeUndefined();
    const task = nftTask(result);
    expect(task.status).toBe('changed');
    expect(task.detail).toMatch(/^incremental: \d+ changes of VIP v3 in one transaction \(generation \d+ unchanged since the last apply\)$/);
    const after = await tableContents();
    const changes = difference(before, after);
    // THEN v3 points at a pool of its own: its old element goes, the new pool's elements and scheduler chain come
    expect(Object.keys(changes).sort()).toEqual(['chains', 'live_l2', 'pool_chain', 'pool_ended_l2', 'pool_new_l2', 'slots_l2', 'vip_pool_port']);
    expect(changes.vip_pool_port.gone).toEqual([expect.stringMatching(/^10\.99\.17\.4 \. tcp \. 80 : /)]);
    expect(changes.vip_pool_port.came).toEqual([expect.stringMatching(/^10\.99\.17\.4 \. tcp \. 80 : /)]);
    expect(changes.chains).toEqual({ gone: [], came: [expect.stringMatching(/^chain l2_tcp_port_rr3_t300 handle \d+$/)] });
    for (const name of ['pool_chain', 'slots_l2', 'live_l2', 'pool_new_l2', 'pool_ended_l2']) expect(changes[name].gone).toEqual([]);
    // AND the diff names exactly what changed
    expect(task.diff).toContain(`- vip_pool_port ${vipIp(3)} . tcp . 80 : `);
    expect(task.diff).toContain('+ chain l2_tcp_port_rr3_t300');
    // AND a check right after finds it in sync, without listing the table either
    const check = await run(spec(3), 'check');
    expect(nftTask(check)).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^in sync \(generation \d+ unchanged since the last apply\)$/) });
  });

  test("GIVEN an incremental update WHEN a VIP element is deleted behind tula-dsr's back THEN check reports it and apply reloads the table, element back", async () => {
    const vipElement = `${vipIp(5)} . tcp . 80`;
    await sh(lb, `nft delete element ${TABLE} vip_pool_port { ${vipElement} }`);

    const check = await run(spec(3), 'check');
    expect(nftTask(check)).toMatchObject({
      status: 'changed',
      detail: 'another nft transaction ran since the last incremental update (the ruleset generation moved): reloaded to be sure',
    });
    const repaired = await run(spec(3), 'apply');

    expect(repaired.error).toBeUndefined();
    expect(nftTask(repaired).detail).toBe('another nft transaction ran since the last incremental update (the ruleset generation moved): reloaded to be sure');
    expect(await sh(lb, `nft list map ${TABLE} vip_pool_port`)).toContain(vipElement);
    // AND the reload recorded a fresh listing and generation: the next change is incremental again
    const next = await run(spec(), 'apply');
    expect(nftTask(next).detail).toMatch(/^incremental: /);
  });

  test("GIVEN a table whose generation was recorded WHEN a rule is added behind tula-dsr's back THEN apply finds it by the listing and repairs it", async () => {
    await sh(lb, `nft insert rule ${TABLE} ingress ip daddr ${vipIp(0)} drop`);

    const repaired = await run(spec(), 'apply');

    expect(nftTask(repaired)).toMatchObject({
      status: 'changed',
      detail: 'another nft transaction ran since the last incremental update (the ruleset generation moved): reloaded to be sure',
    });
    expect(await sh(lb, `nft list chain ${TABLE} ingress`)).not.toContain('drop');
    await sh(lb, `nft insert rule ${TABLE} ingress ip daddr ${vipIp(0)} drop`);
    const again = await run(spec(), 'apply');
    // after a full reload the listing is fresh: the edit shows as such, with its diff
    expect(nftTask(again)).toMatchObject({ status: 'changed', detail: 'live table was changed outside tula-dsr' });
    expect(nftTask(again).diff).toContain(`ip daddr ${vipIp(0)} drop`);
    expect(await sh(lb, `nft list chain ${TABLE} ingress`)).not.toContain('drop');
  });

  test('GIVEN an incremental update that succeeded WHEN a later step of the run fails THEN the previous ruleset is back exactly, flows and counters included', async () => {
    expect(nftTask(await run(spec(), 'apply')).status).toBe('ok');
    await sh(lb, `nft add element ${TABLE} flows_l2_tcp { ${FLOW_TUPLES.map((t) => `${t.replace('10.99.18.', '10.99.19.')} : ${be2.mac}`).join(', ')} }`);
    await synToEveryVip();
    const before = await tableContents();
    await sh(lb, `rm -f ${UPDATE_FILE}`);
    const failure = `mv: cannot move '${STATE}.tula-tmp' to '${STATE}': Input/output error`;

    // the first rename of the state fails; the undo's, which writes the previous state back, works
    const once = `[ "$*" = "-f ${STATE}.tula-tmp ${STATE}" ] && [ ! -e /tmp/mv-failed ] && { touch /tmp/mv-failed; echo "${failure}" >&2; exit 1; }`;
    const result = await withWrappedTool(lb, '/usr/bin/mv', once, () => run(spec(7), 'apply'));
    await sh(lb, 'rm -f /tmp/mv-failed');

    // it was an incremental update of v7 (loaded, then undone when the state failed)
    expect(await sh(lb, `cat ${UPDATE_FILE}`)).toContain(`delete element ${TABLE} vip_pool_port { ${vipIp(7)} . tcp . 80 }`);
    expect(result.error?.message).toBe(`state ${STATE}: command exited with 1: ${failure}; every change of this run was rolled back`);
    expect(difference(before, await tableContents())).toEqual({});
    expect(await leftovers(lb)).toEqual([]);
    // AND the generation record is gone with it: the next run lists the table (which matches the last apply's listing)
    expect((await lb.exec(['test', '-e', GENERATION_FILE])).code).toBe(1);
    const next = await run(spec(7), 'apply');
    expect(next.error).toBeUndefined();
    expect(nftTask(next).detail).toMatch(/^incremental: .*\(listing as at the last apply; generation \d+ recorded\)$/);
  });

  test('GIVEN the kernel refuses the incremental transaction WHEN apply runs THEN nothing of it is loaded and the run is rolled back', async () => {
    const before = await tableContents();
    await sh(lb, `rm -f ${UPDATE_FILE}`);
    const refused = 'Error: Could not process rule: No such file or directory';
    const result = await withWrappedTool(lb, '/usr/sbin/nft', `case "$*" in *update.nft*) echo "${refused}" >&2; exit 1;; esac`, () => run(spec(), 'apply'));

    expect(await sh(lb, `cat ${UPDATE_FILE}`)).toContain(`delete element ${TABLE} vip_pool_port { ${vipIp(7)} . tcp . 80 }`);
    expect(result.error?.message).toMatch(
      /^nft table netdev tula_dsr \(12 VIPs\): command exited with 1: Error: Could not process rule: No such file or directory; every change of this run was rolled back$/,
    );
    expect(difference(before, await tableContents())).toEqual({});
  });

  test("GIVEN the table as the last apply left it WHEN another program's transaction moved the generation THEN check lists the table and writes nothing; apply records the new generation", async () => {
    expect((await run(spec(), 'apply')).error).toBeUndefined();
    expect((await run(spec(), 'apply')).error).toBeUndefined();
    const recorded = await sh(lb, `cat ${GENERATION_FILE}`);
    await sh(lb, 'nft add table ip tula_test_other && nft delete table ip tula_test_other');

    const check = await run(spec(), 'check');

    expect(check.error).toBeUndefined();
    expect(nftTask(check).status).toBe('ok');
    expect(await sh(lb, `cat ${GENERATION_FILE}`)).toBe(recorded);
    const applied = await run(spec(), 'apply');
    expect(nftTask(applied).detail).toMatch(/^in sync \(listing as at the last apply; generation \d+ recorded\)$/);
    expect(await sh(lb, `cat ${GENERATION_FILE}`)).not.toBe(recorded);
  });
  test("GIVEN a VIP whose counter has counted WHEN another VIP is added (an incremental update) and later goes in a reload in place THEN the first VIP's counter keeps its count through both and goes on counting", async () => {
    expect((await run(spec(), 'apply')).error).toBeUndefined();
    await synTo([2]);
    const counted = await vipPackets(2);
    expect(counted).toBeGreaterThan(0);

    // WHEN a VIP is added: one transaction creates its elements, its counter's among them
    const added = await run(spec(undefined, COUNT + 1), 'apply');
    expect(nftTask(added).detail).toMatch(/^incremental: 2 changes of VIP v12 in one transaction /);
    expect(nftTask(added).diff).toContain(`+ vip_stats_port ${vipIp(COUNT)} . tcp . 80`);
    // THEN v2 has its count, and both VIPs count what comes next
    expect(await vipPackets(2)).toBe(counted);
    await synTo([2, COUNT]);
    const afterAdd = await vipPackets(2);
    expect(afterAdd).toBeGreaterThan(counted);
    expect(await vipPackets(COUNT)).toBeGreaterThan(0);

    // WHEN a transaction behind tula-dsr's back moves the generation, the next apply reloads the table in place from
    // its listing, and that reload removes v12
    await sh(lb, `nft add table ip tula_test_other && nft delete table ip tula_test_other`);
    const reloaded = await run(spec(), 'apply');
    expect(reloaded.error).toBeUndefined();
    expect(nftTask(reloaded).detail).toBe(
      'ruleset differs; another nft transaction ran since the last incremental update (the ruleset generation moved): reloaded to be sure',
    );
    // THEN v12's counter went with it, v2's kept its count, and goes on counting
    expect(await sh(lb, `nft list set ${TABLE} vip_stats_port`)).not.toContain(vipIp(COUNT));
    expect(await vipPackets(2)).toBe(afterAdd);
    await synTo([2]);
    expect(await vipPackets(2)).toBeGreaterThan(afterAdd);
    // AND counting is not drift: with the generation moved, check lists the table and finds it as the reload left it
    await sh(lb, `nft add table ip tula_test_other && nft delete table ip tula_test_other`);
    expect(nftTask(await run(spec(), 'check'))).toMatchObject({ status: 'ok', detail: 'in sync' });
  });
  test("GIVEN a table the previous release loaded (a named counter per VIP) and whose generation it recorded WHEN this release applies the same spec THEN it lists the table, reloads it without the named counters, and each VIP's count carries over", async () => {
    expect((await run(spec(), 'apply')).error).toBeUndefined();
    // its ruleset's hash: another text (another renderer), which the boot ruleset here is not
    await loadPreviousRelease('a'.repeat(64));

    const upgraded = await run(spec(), 'apply');

    expect(upgraded.error).toBeUndefined();
    expect(nftTask(upgraded)).toMatchObject({ status: 'changed', detail: 'ruleset differs' });
    expect(await sh(lb, `nft list counters table ${TABLE}`)).not.toContain('counter vip_');
    expect(await sh(lb, `nft list table ${TABLE}`)).not.toContain('vip_counter_port');
    expect(await vipPackets(0)).toBe(7);
    expect(await vipPackets(1)).toBe(0);
    // AND from now on the table is as this release loads it: in sync by its generation alone
    expect(nftTask(await run(spec(), 'apply')).detail).toMatch(/^in sync \(generation \d+ unchanged since the last apply\)$/);
  });

  test('GIVEN a boot ruleset edited by hand WHEN one VIP changes THEN the run lists the table and reloads it, and writes the boot ruleset again', async () => {
    expect((await run(spec(), 'apply')).error).toBeUndefined();
    expect(nftTask(await run(spec(), 'apply')).detail).toMatch(/^in sync \(generation \d+ unchanged since the last apply\)$/);
    await sh(lb, `sed -i 's/^\\t\\tsize /\\t\\tsize 1/' ${BOOT_RULESET}`);
    const edited = await sh(lb, `sha256sum < ${BOOT_RULESET}`);
    const progress: string[] = [];

    const result = await run(spec(4), 'apply', { progress: (l) => progress.push(l) });

    expect(result.error).toBeUndefined();
    expect(nftTask(result)).toMatchObject({ status: 'changed', detail: expect.stringMatching(/^ruleset differs/) });
    expect(progress).toContain('lb: the table the last apply loaded cannot be read back (it is not the ruleset the last apply loaded): listing it');
    expect(result.roundTrips).toBe(3);
    expect(await sh(lb, `sha256sum < ${BOOT_RULESET}`)).not.toBe(edited);
    expect(result.tasks.find((t) => t.name === `file ${BOOT_RULESET}`)?.status).toBe('changed');
    // AND the next change reads the boot ruleset back again
    expect(nftTask(await run(spec(), 'apply')).detail).toMatch(/^incremental: \d+ changes of VIP v4 in one transaction/);
  });

  test('GIVEN a state file of version 1 (with the spec in it) WHEN apply runs THEN it reads it, changes nothing else, and records version 2 without the spec', async () => {
    expect((await run(spec(), 'apply')).error).toBeUndefined();
    const current = JSON.parse(await sh(lb, `cat ${STATE}`)) as Record<string, unknown>;
    expect(current.version).toBe(2);
    expect(current).not.toHaveProperty('spec');
    const v1 = { ...current, version: 1, spec: JSON.stringify(spec()) };
    await lb.exec(['sh', '-c', `cat > ${STATE}`], JSON.stringify(v1, null, 2));

    const result = await run(spec(), 'apply');

    expect(result.error).toBeUndefined();
    expect(result.tasks.filter((t) => t.status !== 'ok').map((t) => `${t.status}: ${t.name}`)).toEqual([`changed: state ${STATE}`]);
    expect(nftTask(result).detail).toMatch(/^in sync \(generation \d+ unchanged since the last apply\)$/);
    const upgraded = JSON.parse(await sh(lb, `cat ${STATE}`)) as Record<string, unknown>;
    expect(upgraded).toEqual(current);
    // AND a change after the upgrade is incremental
    expect(nftTask(await run(spec(6), 'apply')).detail).toMatch(/^incremental: \d+ changes of VIP v6 in one transaction/);
  });
  test("GIVEN the previous release's table and the boot ruleset it wrote (a named counter per VIP) WHEN this release changes a VIP THEN it reads that table back, lists it for the counts its sets take over, and each VIP's count carries over", async () => {
    expect((await run(spec(), 'apply')).error).toBeUndefined();
    // the boot ruleset that release wrote: its named counters, first in the table (as the renderer puts counters)
    const counters = Array.from({ length: COUNT }, (_, i) => `\\tcounter vip_v${i} {\\n\\t}`).join('\\n');
    await sh(
      lb,
      `awk -v c='${counters}' '{ print } /^table netdev tula_dsr [{]$/ { print c }' ${BOOT_RULESET} > /tmp/boot.nft && cat /tmp/boot.nft > ${BOOT_RULESET} && rm /tmp/boot.nft`,
    );
    const declarative = `grep -vx -e 'table netdev tula_dsr' -e 'delete table netdev tula_dsr' ${BOOT_RULESET} | sha256sum | cut -c1-64`;
    await loadPreviousRelease((await sh(lb, declarative)).trim());
    const progress: string[] = [];

    const upgraded = await run(spec(5), 'apply', { progress: (l) => progress.push(l) });

    expect(upgraded.error).toBeUndefined();
    expect(progress).toContain('lb: the table takes over the counts of named counters: listing it');
    expect(nftTask(upgraded)).toMatchObject({ status: 'changed', detail: 'ruleset differs' });
    expect(await sh(lb, `nft list counters table ${TABLE}`)).not.toContain('counter vip_');
    expect(await vipPackets(0)).toBe(7);
    // AND the next change is incremental again
    expect(nftTask(await run(spec(), 'apply')).detail).toMatch(/^incremental: \d+ changes of VIP v5 in one transaction/);
  });

  test('GIVEN another nft transaction between the facts and the apply WHEN the incremental update is about to load THEN it loads nothing, says why, and the run is rolled back; the next run lists the table and applies', async () => {
    expect((await run(spec(), 'apply')).error).toBeUndefined();
    const before = await tableContents();
    const state = await sh(lb, `cat ${STATE}`);
    // the apply script takes the host lock first: another program's transaction lands just before it
    const between = '/usr/sbin/nft add table ip tula_test_between && /usr/sbin/nft delete table ip tula_test_between';
    const result = await withWrappedTool(lb, '/usr/bin/flock', between, () => run(spec(7), 'apply'));

    expect(result.error?.message).toMatch(
      /^nft table netdev tula_dsr \(12 VIPs\): command exited with 1: the ruleset generation moved since the facts were gathered \(another nft transaction ran\): run apply again; every change of this run was rolled back$/,
    );
    expect(difference(before, await tableContents())).toEqual({});
    expect(await sh(lb, `cat ${STATE}`)).toBe(state);
    const again = await run(spec(7), 'apply');
    expect(again.error).toBeUndefined();
    expect(nftTask(again).status).toBe('changed');
    expect((await run(spec(7), 'check')).tasks.filter((t) => t.status !== 'ok')).toEqual([]);
  });
});
