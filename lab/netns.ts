/**
 * Network namespaces and per-host "anchor" processes.
 *
 * A lab host is a network namespace plus an anchor: a `sleep infinity` that owns the host's private mount and
 * UTS namespaces. The anchor is started under `ip netns exec` (so it also gets a /sys for the namespace), then
 * `unshare --mount --uts` sets up the host's own view of the file system:
 *
 *  - /etc, /var and /usr/local are overlays of the machine's with a per-host tmpfs upper layer, so whatever a
 *    host writes there (sysctl.d, systemd units, /var/lib/tula-dsr, the runtime, users, logs) stays on that host
 *    and disappears with it. Nothing can leak into the build machine's /etc.
 *  - /root, /home, /tmp and /run are fresh and empty, so root's login shell does not run the machine's .bashrc.
 *  - /run/netns is detached, so a host never pins other namespaces.
 *
 * Everything the lab runs inside a host (sshd, test commands) enters these namespaces with
 * `nsenter --target <anchor pid> --net --mount --uts`. `ip netns exec NAME` alone would show the machine's /etc.
 * Every process gets `setpriv --pdeathsig`, so servers die with the test run even if it is killed.
 */
import { execFile, execOk, spawnBackground, BackgroundProcess, waitFor, ExecResult } from './exec';
import { shellQuote } from '../model/shell';

/** Prefix of every namespace and root-namespace interface the lab creates. */
export const LAB_PREFIX = 'tula';

export async function listNetns(): Promise<string[]> {
  const r = await execOk(['ip', '-j', 'netns', 'list']);
  const text = r.stdout.trim();
  if (text === '') return [];
  return (JSON.parse(text) as { name: string }[]).map((n) => n.name);
}

/** Creates a namespace; fails if one with that name exists already, so the lab never adopts a foreign namespace. */
export async function addNetns(name: string): Promise<void> {
  if ((await listNetns()).includes(name)) {
    throw new Error(`network namespace "${name}" exists already and was not created by this lab: refusing to use it`);
  }
  await execOk(['ip', 'netns', 'add', name]);
}

/** PIDs of all processes whose network namespace is `name`. */
export async function netnsPids(name: string): Promise<number[]> {
  const r = await execFile(['ip', 'netns', 'pids', name]);
  if (r.code !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** SIGKILLs every process inside the namespace and waits (up to 2 s) until none is left. */
export async function killNetnsProcesses(name: string): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const pids = await netnsPids(name);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await waitFor(async () => (await netnsPids(name)).length === 0, 700, 10);
  }
}

/** Kills what is left inside the namespace, then deletes it. Missing namespaces are fine (idempotent). */
export async function deleteNetns(name: string): Promise<void> {
  if (!(await listNetns()).includes(name)) return;
  await killNetnsProcesses(name);
  await execOk(['ip', 'netns', 'delete', name]);
}

/** What a host anchor needs to build the host's file system view. */
export interface AnchorOptions {
  readonly netns: string;
  readonly hostname: string;
  /** An empty directory in the lab dir; the anchor mounts the host's tmpfs there (visible only inside the host). */
  readonly rwDir: string;
  /** Shell commands run after the host's mounts are in place (write /etc/ssh files, users, ...). */
  readonly provision: string;
}

export interface Anchor {
  readonly pid: number;
  readonly process: BackgroundProcess;
}

const READY_MARK = 'tula-lab-anchor-ready';

/** Renders the script that builds the host's mount namespace. Exported for review and tests. */
export function renderAnchorScript(opts: AnchorOptions): string {
  const rw = shellQuote(opts.rwDir);
  return [
    'set -e',
    // never keep references to other namespaces alive from inside a host
    'umount -l /run/netns 2>/dev/null || :',
    `mount -t tmpfs -o mode=0755,size=256m tula-lab ${rw}`,
    // from here on, paths are relative to the host's tmpfs: they stay valid when /tmp or /run get covered below
    `cd ${rw}`,
    'mkdir etc etc.work var var.work usr-local usr-local.work root home tmp run',
    'mount -t overlay -o lowerdir=/etc,upperdir=etc,workdir=etc.work tula-etc /etc',
    'mount -t overlay -o lowerdir=/var,upperdir=var,workdir=var.work tula-var /var',
    // the balancer runtime's program goes to /usr/local/lib
    'mount -t overlay -o lowerdir=/usr/local,upperdir=usr-local,workdir=usr-local.work tula-usr-local /usr/local',
    'chmod 0700 root && mount --bind root /root',
    'mount --bind home /home',
    'chmod 1777 tmp && mount --bind tmp /tmp',
    'mount --bind run /run',
    'mkdir -m 0755 /run/sshd',
    `hostname ${shellQuote(opts.hostname)}`,
    `printf '127.0.1.1\\t%s\\n' ${shellQuote(opts.hostname)} >> /etc/hosts`,
    opts.provision,
    `echo ${READY_MARK} >&2`,
    'exec sleep infinity',
  ].join('\n');
}

/** An upper bound, not a delay: 100 hosts starting at once on a shared 2-core machine took more than 5 s. */
const READY_TIMEOUT_MS = 30_000;

/** Starts the anchor of one host and resolves once its mounts are ready. */
export async function startAnchor(opts: AnchorOptions, timeoutMs = READY_TIMEOUT_MS): Promise<Anchor> {
  const argv = [
    'ip',
    'netns',
    'exec',
    opts.netns,
    'setpriv',
    '--pdeathsig',
    'KILL',
    'unshare',
    '--mount',
    '--uts',
    '--propagation',
    'private',
    'sh',
    '-c',
    renderAnchorScript(opts),
  ];
  const proc = spawnBackground(argv);
  const ready = await waitFor(() => proc.stderrText().includes(READY_MARK) || !proc.isRunning(), timeoutMs);
  if (!ready || !proc.isRunning()) {
    await proc.stop('SIGKILL');
    throw new Error(`lab host ${opts.hostname}: setting up its namespaces failed:\n${proc.stderrText().trim()}`);
  }
  return { pid: proc.pid, process: proc };
}

/** argv prefix that runs a command inside a host: its network, mount and UTS namespaces. */
export function enterHostArgv(anchorPid: number, argv: readonly string[]): string[] {
  return ['nsenter', '--target', String(anchorPid), '--net', '--mount', '--uts', '--', ...argv];
}

/** Runs argv (or a sh script) inside a host and returns its output; never throws for a non-zero exit. */
export function execInHost(anchorPid: number, cmd: readonly string[] | string, input?: string): Promise<ExecResult> {
  const argv = typeof cmd === 'string' ? ['sh', '-c', cmd] : cmd;
  return execFile(enterHostArgv(anchorPid, argv), { input });
}
