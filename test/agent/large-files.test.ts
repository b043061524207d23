/**
 * Large files cost what changed (issue 17): with the agent's copies of a host's files (FileCache), the facts bring
 * back only the hashes of a 500-VIP balancer's ruleset, boot script and state file, and a change to one VIP sends
 * line patches instead of the files. On the real kernel with real sshd: the patched files are exactly what the
 * agent wanted (a check without any cache finds nothing to change); a stale or tampered copy costs a full transfer,
 * never a wrong plan; a file that changes between the facts and the apply fails the patch and the run rolls back.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, SshConnection } from '../../agent/ssh/connection';
import { targetOf } from '../../agent/runner';
import { parseHostSpec } from '../../agent/spec-input';
import { PATCH_MIN_BYTES } from '../../agent/tasks/steps';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { backendSpec, balancerSpec, run, sh, VipInput } from './helpers';

jest.setTimeout(120_000);

const RULESET = '/etc/tula-dsr/balancer.nft';
const BOOT = '/etc/tula-dsr/balancer-up.sh';
const STATE = '/var/lib/tula-dsr/balancer.json';
const BACKEND_BOOT = '/etc/tula-dsr/backend-up.sh';
const COUNT = 500;
const vipIp = (i: number) => `10.98.${Math.floor(i / 250)}.${(i % 250) + 1}`;
/** The first line of the boot ruleset: seen in a facts answer only when the file travelled. */
const RULESET_HEAD = '# Managed by tula-dsr: DSR balancer';

let lab: Lab;
let lb: LabHost;
let be1: LabHost;
let be2: LabHost;
let cacheRoot: string;

beforeAll(async () => {
  lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }, { name: 'be2' }] });
  ({ lb, be1, be2 } = lab.hosts);
  cacheRoot = mkdtempSync(join(tmpdir(), 'tula-large-files-cache-'));
});

afterAll(async () => {
  await lab?.teardown();
  if (cacheRoot) rmSync(cacheRoot, { recursive: true, force: true });
});

function spec(heavy?: number): string {
  const vips: VipInput[] = Array.from({ length: COUNT }, (_, i) => ({
    name: `v${i}`,
    ip: vipIp(i),
    backends: [
      { name: 'be1', ip: be1.ip, weight: i === heavy ? 3 : 1 },
      { name: 'be2', ip: be2.ip, weight: 1 },
    ],
  }));
  return JSON.stringify(balancerSpec(lab, lb, vips));
}

/** The scripts the run sent and what they printed, in order (facts first, then the apply). */
interface Recorded {
  readonly connection: SshConnection;
  readonly runs: { script: string; stdout: string }[];
}

/** A connection that records each run, and calls `between` after the first run (the facts) returns. */
async function recordingConnection(specText: string, between?: () => Promise<void>): Promise<Recorded> {
  const connection = await connect(targetOf(parseHostSpec(specText)));
  const runs: Recorded['runs'] = [];
  const original = connection.run.bind(connection);
  connection.run = async (script, options) => {
    const r = await original(script, options);
    runs.push({ script, stdout: r.stdout });
    if (runs.length === 1 && between) await between();
    return r;
  };
  return { connection, runs };
}

async function applyRecorded(specText: string, between?: () => Promise<void>) {
  const rec = await recordingConnection(specText, between);
  try {
    const result = await run(specText, 'apply', { connection: rec.connection, cacheRoot });
    return { result, runs: rec.runs };
  } finally {
    await rec.connection.close();
  }
}

const cat = (host: LabHost, path: string) => sh(host, `cat ${path}`);

/** The cache's copies, whatever host they belong to (one file per host and path). */
function cachedCopies(): string[] {
  return readdirSync(cacheRoot, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(join(e.parentPath, e.name), 'utf8'));
}

/** A check that brings every file whole (no cache) and changes nothing: the host is exactly what the spec wants. */
async function expectInSync(specText: string): Promise<void> {
  const check = await run(specText, 'check', { cacheRoot: null });
  expect(check.error).toBeUndefined();
  expect(check.tasks.filter((t) => t.status !== 'ok')).toEqual([]);
}

describe('a large balancer with the agent cache', () => {
  beforeAll(async () => {
    const cold = await run(spec(), 'apply', { cacheRoot });
    expect(cold.error).toBeUndefined();
    for (const path of [RULESET, BOOT, STATE]) expect((await cat(lb, path)).length).toBeGreaterThanOrEqual(PATCH_MIN_BYTES);
  });

  test('GIVEN a balancer of 500 VIPs applied once WHEN one VIP changes its weights THEN the facts bring hashes instead of the large files, the apply sends patches, and the host is exactly as wanted', async () => {
    const ruleset = await cat(lb, RULESET);
    // the cold apply left the copies of the files it wrote, the state with the listing hash the host recorded
    expect(cachedCopies()).toEqual(expect.arrayContaining([ruleset, await cat(lb, BOOT), await cat(lb, STATE)]));

    const { result, runs } = await applyRecorded(spec(7));
    expect(result.error).toBeUndefined();
    expect(result.tasks.filter((t) => t.status === 'changed').map((t) => t.name)).toEqual(
      expect.arrayContaining([`file ${RULESET}`, 'nft table netdev tula_dsr (500 VIPs)', `state ${STATE}`]),
    );
    const [facts, apply] = runs;
    expect(facts.stdout).not.toContain(RULESET_HEAD);
    expect(facts.stdout).toContain(`@@same `);
    expect(facts.stdout.length).toBeLessThan(ruleset.length / 2);
    // the ruleset and the state file go as patches; the journal holds only what the state lacks (nothing here)
    expect(apply.script).not.toContain(RULESET_HEAD);
    expect(apply.script.length).toBeLessThan(ruleset.length / 2);
    expect((apply.script.match(/ \| awk /g) ?? []).length).toBe(2);
    expect(apply.script).toContain('"addresses":[],');

    await expectInSync(spec(7));
    expect(cachedCopies()).toEqual(expect.arrayContaining([await cat(lb, RULESET), await cat(lb, STATE)]));
    // and back, with the copies the last run kept
    const back = await applyRecorded(spec());
    expect(back.result.error).toBeUndefined();
    expect(back.runs[0].stdout).not.toContain(RULESET_HEAD);
    await expectInSync(spec());
  });

  test('GIVEN the boot ruleset edited by hand (the cached copy is stale) WHEN apply runs THEN the file travels whole, the edit is reported and repaired', async () => {
    await sh(lb, `echo '# edited by hand' >> ${RULESET}`);
    const { result, runs } = await applyRecorded(spec());
    expect(result.error).toBeUndefined();
    expect(runs[0].stdout).toContain(RULESET_HEAD);
    const file = result.tasks.find((t) => t.name === `file ${RULESET}`);
    expect(file?.status).toBe('changed');
    expect(file?.diff).toContain('-# edited by hand');
    expect(await cat(lb, RULESET)).not.toContain('edited by hand');
    await expectInSync(spec());
  });

  test('GIVEN cached copies that were tampered with WHEN apply runs THEN they are not used: the files travel whole and the plan is right', async () => {
    for (const e of readdirSync(cacheRoot, { recursive: true, withFileTypes: true }).filter((x) => x.isFile()))
      writeFileSync(join(e.parentPath, e.name), `${readFileSync(join(e.parentPath, e.name), 'utf8')}# tampered\n`);
    const { result, runs } = await applyRecorded(spec(11));
    expect(result.error).toBeUndefined();
    expect(runs[0].stdout).toContain(RULESET_HEAD);
    expect(runs[0].stdout).not.toContain('@@same ');
    await expectInSync(spec(11));
  });

  test('GIVEN the boot ruleset changes between the facts and the apply WHEN the patch is applied THEN the run fails, says why, and rolls back: table, files and state as they were', async () => {
    // warm copies again (the last run kept the ones it wrote)
    const before = { ruleset: await cat(lb, RULESET), state: await cat(lb, STATE), table: await sh(lb, 'nft list table netdev tula_dsr') };
    const edited = `${before.ruleset}# edited while the run planned\n`;
    const { result, runs } = await applyRecorded(spec(12), async () => {
      await sh(lb, `echo '# edited while the run planned' >> ${RULESET}`);
    });
    expect(runs).toHaveLength(2);
    expect(runs[1].script).toContain(' | awk ');
    expect(result.error?.message).toContain(`${RULESET} changed since the facts were read`);
    expect(result.error?.message).toContain('every change of this run was rolled back');
    expect(await cat(lb, RULESET)).toBe(edited);
    expect(await cat(lb, STATE)).toBe(before.state);
    expect(await sh(lb, 'nft list table netdev tula_dsr')).toBe(before.table);
    // the next run repairs it
    const again = await run(spec(12), 'apply', { cacheRoot });
    expect(again.error).toBeUndefined();
    await expectInSync(spec(12));
  });
});

describe('a backend carrying many VIPs with the agent cache', () => {
  const services = (count: number) => Array.from({ length: count }, (_, i) => ({ ip: vipIp(i) }));
  const backend = (count: number) => JSON.stringify(backendSpec(lab, be1, services(count)));

  test('GIVEN a backend with 600 VIPs WHEN one VIP is added and removed THEN its boot script and state go as patches and the host is exactly as wanted; a remove drops the copies', async () => {
    expect((await run(backend(600), 'apply', { cacheRoot })).error).toBeUndefined();
    const boot = await cat(be1, BACKEND_BOOT);
    expect(boot.length).toBeGreaterThanOrEqual(PATCH_MIN_BYTES);
    for (const count of [601, 600]) {
      const { result, runs } = await applyRecorded(backend(count));
      expect(result.error).toBeUndefined();
      expect(result.counts.changed).toBeGreaterThan(0);
      expect(runs[0].stdout).not.toContain(boot.split('\n')[0]);
      expect(runs[1].script.length).toBeLessThan(boot.length / 2);
      await expectInSync(backend(count));
    }
    // a reboot loses the 600 addresses; the boot script puts them back in one `ip -batch` (a line per address)
    await sh(be1, `ip -o addr show dev lo | awk '$4 ~ /^10\\.98\\./ { print "addr del " $4 " dev lo" }' | ip -batch -`);
    expect(await sh(be1, 'ip -o addr show dev lo | grep -c " 10\\.98\\." || true')).toBe('0\n');
    await sh(be1, `sh ${BACKEND_BOOT}`);
    expect(await sh(be1, 'ip -o addr show dev lo | grep -c " 10\\.98\\." || true')).toBe('600\n');
    // the host is as wanted: the next apply only records the host's new address listing in its state
    const restored = await run(backend(600), 'apply', { cacheRoot: null });
    expect(restored.tasks.filter((t) => t.status !== 'ok').map((t) => t.name)).toEqual(['state /var/lib/tula-dsr/backend.json']);
    await expectInSync(backend(600));
    // a remove leaves none of the host's files, and the agent forgets its copies of them
    const hosts = () => readdirSync(cacheRoot).filter((d) => d.startsWith('host-')).length;
    const before = hosts();
    const removed = await run(backend(600), 'remove', { cacheRoot });
    expect(removed.error).toBeUndefined();
    expect(hosts()).toBe(before - 1);
  });
});
