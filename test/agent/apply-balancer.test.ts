/**
 * `apply` on a balancer host with a real L2 VIP whose backends are other lab hosts. Backend MACs are
 * resolved against real neighbours on the lab bridge; an unanswering backend fails clearly and changes nothing.
 */
import { createLab, Lab, LabHost } from '../../lab/topology';
import { BALANCER_RULESET_FILE } from '../../model';
import { TASK_LINE, addresses, backendSpec, balancerSpec, run, sh, snapshot, unusedIp, leftovers } from './helpers';

jest.setTimeout(30_000);

const VIP = '10.99.2.10';
/** Weird but valid names: '-' and '_' reach nft object names, file comments and shell commands. */
const VIP_NAME = 'web-1_a';

let lab: Lab;
let lb: LabHost;
let be1: LabHost;
let be2: LabHost;
let client: LabHost;
let specText: string;

beforeAll(async () => {
  lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }, { name: 'be2' }, { name: 'client', sshd: false }] });
  ({ lb, be1, be2, client } = lab.hosts);
  specText = JSON.stringify(
    balancerSpec(lab, lb, [
      {
        name: VIP_NAME,
        ip: VIP,
        port: 80,
        backends: [
          { name: 'be-1_x', ip: be1.ip },
          { name: 'be_2-y', ip: be2.ip },
        ],
      },
    ]),
  );
});

afterAll(async () => {
  await lab?.teardown();
});

/** The map elements `<pool> . <slot> : <mac>` of the live slot map (one VIP, so one pool). */
async function slotMacs(): Promise<string[]> {
  const listing = await sh(lb, 'nft list map netdev tula_dsr slots_l2');
  return [...listing.matchAll(/[0-9a-f]+:[0-9a-f]+ \. (\d+) : ([0-9a-f:]{17})/g)].map((m) => `${Number(m[1])} ${m[2]}`);
}

describe('balancer host apply (real nft, real neighbours)', () => {
  test('GIVEN two backends on the segment WHEN apply runs THEN their real eth0 MACs are in the loaded ruleset, in 2 round trips', async () => {
    const result = await run(specText, 'apply');

    expect(result.error).toBeUndefined();
    expect(TASK_LINE(result)).toEqual([
      `ok: backend MAC ${be1.ip}`,
      `ok: backend MAC ${be2.ip}`,
      `changed: address ${VIP}/32 dev eth0`,
      `changed: file ${BALANCER_RULESET_FILE}`,
      'changed: file /etc/tula-dsr/balancer-up.sh',
      'changed: file /etc/systemd/system/tula-dsr-balancer.service',
      'changed: nft table netdev tula_dsr (1 VIPs)',
      'ok: boot unit tula-dsr-balancer.service',
      'changed: state /var/lib/tula-dsr/balancer.json',
    ]);
    expect(result.tasks[0].detail).toBe(`${be1.mac} (resolved on eth0)`);
    expect(result.tasks[1].detail).toBe(`${be2.mac} (resolved on eth0)`);
    expect(result.roundTrips).toBe(2);

    // THEN the live scheduler map sends the two slots to the backends' real MACs
    expect(await slotMacs()).toEqual([`0 ${be1.mac}`, `1 ${be2.mac}`]);
    // AND frames leave with the balancer's own MAC as source, back out of eth0
    expect(await sh(lb, 'nft list chain netdev tula_dsr l2_out')).toContain(`ether saddr set ${lb.mac} fwd to "eth0"`);
    // AND the base chain hooks ingress on eth0; the VIP counts in its element of the VIP statistics set (its
    // weird-but-valid name reaches no nft object)
    const table = await sh(lb, 'nft list table netdev tula_dsr');
    expect(table).toContain('type filter hook ingress device "eth0" priority -300; policy accept;');
    expect(await sh(lb, 'nft list set netdev tula_dsr vip_stats_port')).toMatch(new RegExp(`${VIP.replace(/\./g, '\\.')} \\. tcp \\. 80 counter packets \\d+`));
    expect(table).not.toContain('web-1_a');
    // AND the boot file holds the same MACs, and the balancer owns the VIP on eth0 (it answers ARP for it)
    const bootRuleset = await sh(lb, `cat ${BALANCER_RULESET_FILE}`);
    expect(bootRuleset).toContain(`MAC of ${be1.ip}, resolved on the balancer at apply time`);
    expect(bootRuleset).toContain(`= ${be1.mac}`);
    expect(bootRuleset).toContain(`= ${be2.mac}`);
    expect(await addresses(lb, 'eth0')).toEqual([`${lb.ip}/24`, `${VIP}/32`]);
    expect(await leftovers(lb)).toEqual([]);
  });

  test('GIVEN an applied balancer WHEN apply runs again THEN changed=0 in 1 round trip and nothing on the host is modified', async () => {
    const before = await snapshot(lb, { strict: true });
    const result = await run(specText, 'apply');
    expect(result.error).toBeUndefined();
    expect(result.counts).toEqual({ ok: 9, changed: 0, failed: 0, skipped: 0 });
    expect(result.roundTrips).toBe(1);
    expect(await snapshot(lb, { strict: true })).toEqual(before);
  });

  test('GIVEN the backends applied too WHEN a client requests the VIP THEN both backends answer (L2 DSR end to end)', async () => {
    for (const be of [be1, be2]) {
      const r = await run(backendSpec(lab, be, [{ ip: VIP, port: 80 }]), 'apply');
      expect(r.error).toBeUndefined();
      await sh(be, `mkdir -p /tmp/www && echo ${be.name} > /tmp/www/index.html`);
      be.spawn(['python3', '-m', 'http.server', '80', '--bind', '0.0.0.0', '--directory', '/tmp/www']);
    }
    await sh(client, `ip route add ${VIP}/32 dev eth0`);
    for (const be of [be1, be2]) await sh(be, 'for i in $(seq 50); do ss -ltn | grep -q ":80 " && exit 0; sleep 0.1; done; exit 1');

    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await client.exec(['curl', '-s', '--max-time', '3', `http://${VIP}/`]);
      expect(r.code).toBe(0);
      seen.push(r.stdout.trim());
    }
    // round robin per new flow: both backends serve; the balancer never answers itself
    expect([...new Set(seen)].sort()).toEqual(['be1', 'be2']);
  });

  test('GIVEN a backend address nobody answers WHEN apply runs THEN a clear failed task names it and nothing changes on the host', async () => {
    const ghost = unusedIp(lab, 201);
    const spec = balancerSpec(lab, lb, [
      {
        name: VIP_NAME,
        ip: VIP,
        port: 80,
        backends: [
          { name: 'be-1_x', ip: be1.ip },
          { name: 'ghost', ip: ghost },
        ],
      },
      { name: 'api', ip: '10.99.2.11', port: 443, backends: [{ name: 'be_2-y', ip: be2.ip }] },
    ]);
    const before = await snapshot(lb);

    const result = await run(spec, 'apply');

    expect(result.tasks.filter((t) => t.status === 'failed')).toEqual([
      {
        name: `backend MAC ${ghost}`,
        status: 'failed',
        detail: `lab/${VIP_NAME}/ghost: ${ghost} does not answer ARP on eth0 of lb; check that it is up and on the balancer's segment, or set mac on the backend`,
        diff: undefined,
      },
    ]);
    expect(result.error).toEqual({
      kind: 'task-failed',
      task: `backend MAC ${ghost}`,
      message: `backend MAC ${ghost}: ${result.tasks.find((t) => t.status === 'failed')!.detail}`,
    });
    expect(result.roundTrips).toBe(1);
    // nothing changed: same ruleset (the old VIP still forwards), addresses, sysctls and files
    const after = await snapshot(lb);
    expect(after).toEqual(before);
    expect(await slotMacs()).toEqual([`0 ${be1.mac}`, `1 ${be2.mac}`]);
  });

  test.each([
    ['a multicast MAC', '01:00:5e:00:00:01', 'is a multicast MAC address'],
    ['the broadcast MAC', 'ff:ff:ff:ff:ff:ff', 'is a multicast MAC address'],
    ['the all-zero MAC', '00:00:00:00:00:00', 'is the all-zero MAC address'],
  ])(
    "GIVEN the balancer's neighbour table maps a backend to %s WHEN apply runs THEN it is refused like a user-given one and nothing changes",
    async (_what, mac, problem) => {
      const odd = unusedIp(lab, 202);
      await sh(lb, `ip neigh replace ${odd} lladdr ${mac} dev eth0 nud permanent`);
      try {
        const spec = balancerSpec(lab, lb, [{ name: 'odd', ip: '10.99.2.12', port: 80, backends: [{ name: 'odd1', ip: odd }] }]);
        const before = await snapshot(lb);

        const result = await run(spec, 'apply');

        expect(result.tasks.filter((t) => t.status === 'failed').map((t) => `${t.name}: ${t.detail}`)).toEqual([
          `backend MAC ${odd}: lab/odd/odd1: the neighbour table of eth0 on lb maps ${odd} to "${mac}", which ${problem}; ` +
            `L2 DSR forwards only to a backend's unicast MAC: correct the entry (ip neigh del ${odd} dev eth0) or set mac on the backend`,
        ]);
        expect(await snapshot(lb)).toEqual(before);
      } finally {
        await sh(lb, `ip neigh del ${odd} dev eth0`);
      }
    },
  );

  test('GIVEN 200 VIPs WHEN apply, re-apply and remove run THEN the addresses go in one ip -batch step each way and the host ends as it began', async () => {
    // From a clean host: the earlier tests' configuration goes first.
    expect((await run(specText, 'remove')).error).toBeUndefined();
    const before = await snapshot(lb);
    const many = Array.from({ length: 200 }, (_, i) => ({ name: `v${i}`, ip: `10.99.3.${i + 1}`, port: 80, backends: [{ name: 'be1', ip: be1.ip }] }));
    const spec = JSON.stringify(balancerSpec(lab, lb, many));

    const applied = await run(spec, 'apply');
    expect(applied.error).toBeUndefined();
    const batch = applied.tasks.find((t) => t.name === 'addresses on eth0 (200 wanted)');
    expect(batch).toMatchObject({ status: 'changed', detail: '200 added' });
    expect(batch?.diff?.split('\n')).toHaveLength(200);
    expect((await addresses(lb, 'eth0')).filter((a) => a.startsWith('10.99.3.'))).toHaveLength(200);

    const again = await run(spec, 'apply');
    expect(again.counts.changed).toBe(0);
    expect(again.tasks.find((t) => t.name === 'addresses on eth0 (200 wanted)')).toMatchObject({ status: 'ok', detail: 'all present' });

    const removed = await run(spec, 'remove');
    expect(removed.error).toBeUndefined();
    expect(removed.tasks.find((t) => t.name === 'addresses on eth0 (200)')).toMatchObject({ status: 'changed', detail: 'removed' });
    expect(await snapshot(lb)).toEqual(before);
  });
});
