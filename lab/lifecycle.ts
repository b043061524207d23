/**
 * A namespace lab's life on the machine: the names it owns, the record it keeps in /run/tula-lab/<id>/lab.json, what
 * it has started so far, and removing all of that again: `teardown()` for a lab of this process, a synchronous last
 * resort when the process exits without calling it, and `reapStaleLabs()` for labs whose process died.
 */
import { mkdirSync, rmSync, writeFileSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { execFile, execOk, BackgroundProcess } from './exec';
import { LAB_PREFIX, killNetnsProcesses, deleteNetns, Anchor } from './netns';
import { LAB_ROOT, Subnet, releaseSubnet, ProcessIdentity, selfIdentity, isAlive } from './subnet';

/** Every name and path a lab owns, all derived from its id. */
export interface LabNames {
  readonly id: string;
  /** /run/tula-lab/<id>: keys, one folder per host, known_hosts, lab.json. */
  readonly dir: string;
  readonly knownHostsPath: string;
  readonly switchNetns: string;
  /** Root-namespace end of the controller veth. */
  readonly rootIf: string;
  /** All namespaces of this lab (switch first). */
  readonly netnsNames: readonly string[];
  hostNetns(hostName: string): string;
}

export function labNames(id: string, hosts: readonly { readonly name: string }[]): LabNames {
  const dir = `${LAB_ROOT}/${id}`;
  const switchNetns = `${LAB_PREFIX}-${id}-switch`;
  const hostNetns = (name: string) => `${LAB_PREFIX}-${id}-${name}`;
  return {
    id,
    dir,
    knownHostsPath: `${dir}/known_hosts`,
    switchNetns,
    rootIf: `${LAB_PREFIX}${id}`,
    netnsNames: [switchNetns, ...hosts.map((h) => hostNetns(h.name))],
    hostNetns,
  };
}

/** lab.json: what another run needs to remove this lab once its owner is gone. */
interface LabState {
  readonly id: string;
  readonly owner: ProcessIdentity;
  readonly netns: readonly string[];
  readonly rootIf: string;
  readonly subnetOctet: number | null;
}

/**
 * What a lab has claimed and started so far, so that teardown removes exactly that, whenever it runs: after a
 * failed createLab as well as at the end of a test.
 */
export class LabResources {
  /** The processes holding each host's mount and UTS namespaces. */
  readonly anchors: Anchor[] = [];
  /** The running sshd of each host, by host name. */
  readonly sshds = new Map<string, BackgroundProcess>();
  /** Processes started with `LabHost.spawn`. */
  readonly spawned: BackgroundProcess[] = [];
  private subnet: Subnet | undefined;
  private tornDown: Promise<void> | undefined;
  private readonly exitHandler = () => teardownSync(this.state(), this.names.dir);

  constructor(readonly names: LabNames) {}

  /**
   * Creates the lab dir and its record before anything else exists, so that a run killed at any later point leaves
   * enough behind for `reapStaleLabs()`; and cleans up synchronously if this process exits without `teardown()`.
   */
  open(): void {
    mkdirSync(this.names.dir, { recursive: true, mode: 0o700 });
    this.writeRecord();
    process.once('exit', this.exitHandler);
  }

  /** Records the claimed subnet at once, so that whoever removes the lab also releases the claim. */
  recordSubnet(subnet: Subnet): void {
    this.subnet = subnet;
    this.writeRecord();
  }

  get isTornDown(): boolean {
    return this.tornDown !== undefined;
  }

  /** Stops every process, deletes namespaces, the veth and the lab dir. Idempotent. */
  teardown(): Promise<void> {
    this.tornDown ??= this.removeEverything();
    return this.tornDown;
  }

  private async removeEverything(): Promise<void> {
    const { id, dir, rootIf, netnsNames } = this.names;
    const errors: string[] = [];
    // keep going after a failure: whatever can be removed is removed, and the error lists what could not
    const attempt = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };
    await Promise.all(this.spawned.map((p) => attempt('stop spawned process', () => p.stop('SIGTERM', 1000))));
    await Promise.all([...this.sshds.values()].map((p) => attempt('stop sshd', () => p.stop('SIGTERM', 1000))));
    await Promise.all(this.anchors.map((a) => attempt('stop anchor', () => a.process.stop('SIGKILL'))));
    await Promise.all(netnsNames.map((n) => attempt(`kill processes in ${n}`, () => killNetnsProcesses(n))));
    await attempt(`delete ${rootIf}`, () => deleteLinkIfPresent(rootIf));
    await Promise.all(netnsNames.map((n) => attempt(`delete ${n}`, () => deleteNetns(n))));
    if (this.subnet) releaseSubnet(this.subnet.octet, id);
    await attempt(`remove ${dir}`, async () => rmSync(dir, { recursive: true, force: true }));
    process.removeListener('exit', this.exitHandler);
    if (errors.length > 0) throw new Error(`lab ${id} teardown was incomplete:\n${errors.join('\n')}`);
  }

  private state(): LabState {
    const { id, netnsNames, rootIf } = this.names;
    return { id, owner: selfIdentity(), netns: netnsNames, rootIf, subnetOctet: this.subnet?.octet ?? null };
  }

  private writeRecord(): void {
    writeFileSync(`${this.names.dir}/lab.json`, JSON.stringify(this.state(), null, 2));
  }
}

async function deleteLinkIfPresent(name: string): Promise<void> {
  const r = await execFile(['ip', 'link', 'show', 'dev', name]);
  if (r.code === 0) await execOk(['ip', 'link', 'delete', 'dev', name]);
}

/** Best-effort synchronous cleanup when the test process exits without calling teardown(). */
function teardownSync(s: LabState, dir: string): void {
  for (const n of s.netns) {
    const pids = spawnSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).stdout ?? '';
    for (const pid of pids
      .split('\n')
      .map(Number)
      .filter((p) => p > 0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  spawnSync('ip', ['link', 'delete', 'dev', s.rootIf], { stdio: 'ignore' });
  for (const n of s.netns) spawnSync('ip', ['netns', 'delete', n], { stdio: 'ignore' });
  if (s.subnetOctet !== null) releaseSubnet(s.subnetOctet, s.id);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Removes labs left behind by test runs that died (their owner process is gone): processes, namespaces, the
 * controller veth, the subnet claim and the lab dir. Only labs recorded in /run/tula-lab/<id>/lab.json are
 * touched. Returns the ids it removed.
 */
export async function reapStaleLabs(): Promise<string[]> {
  if (!existsSync(LAB_ROOT)) return [];
  const reaped: string[] = [];
  for (const entry of readdirSync(LAB_ROOT)) {
    if (!/^[0-9a-f]{6}$/.test(entry)) continue;
    const dir = `${LAB_ROOT}/${entry}`;
    let s: LabState;
    try {
      s = JSON.parse(readFileSync(`${dir}/lab.json`, 'utf8')) as LabState;
    } catch {
      continue;
    }
    if (s.id !== entry || isAlive(s.owner)) continue;
    if (!s.netns.every((n) => n.startsWith(`${LAB_PREFIX}-${entry}-`)) || s.rootIf !== `${LAB_PREFIX}${entry}`) continue;
    try {
      for (const n of s.netns) await killNetnsProcesses(n);
      await deleteLinkIfPresent(s.rootIf);
      for (const n of s.netns) await deleteNetns(n);
      if (s.subnetOctet !== null) releaseSubnet(s.subnetOctet, s.id);
      rmSync(dir, { recursive: true, force: true });
      reaped.push(entry);
    } catch {
      // another run may be reaping the same lab right now; whatever is left, the next reap removes
    }
  }
  return reaped;
}
