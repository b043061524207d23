import { closeSync, openSync, rmSync, statSync } from 'node:fs';
import { connect, Socket } from 'node:net';
import { join } from 'node:path';
import type { CliIo } from '../io';
import { buildId, runtimeDir, socketPath } from './paths';
import { DaemonFrame, PROTOCOL_VERSION, readLines, writeFrame } from './protocol';

/** `0`, `off`, `false` or `no` runs the agent in the provisioner's own process. */
export const DAEMON_ENV = 'TULA_DSR_DAEMON';
/** How long an idle daemon stays (ms). */
export const DAEMON_IDLE_ENV = 'TULA_DSR_DAEMON_IDLE_MS';

/** How long a client waits for a daemon to come up before it runs the agent itself. */
const START_WAIT_MS = 15_000;
/** A spawn lock older than this belongs to a daemon that died while starting. */
const STALE_LOCK_MS = 10_000;
const POLL_MS = 15;
/** How many daemons that answer `stale` a client replaces before it runs the agent itself (agent/daemon/client.pl too). */
const STALE_ATTEMPTS = 3;

export function daemonDisabled(env: NodeJS.ProcessEnv): boolean {
  return /^(0|off|false|no)$/i.test(env[DAEMON_ENV] ?? '');
}

function tryConnect(path: string): Promise<Socket | null> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', () => resolve(null));
  });
}

/** One client wins the right to start the daemon; the others wait for its socket. */
function takeSpawnLock(lock: string): boolean {
  try {
    closeSync(openSync(lock, 'wx', 0o600));
    return true;
  } catch {
    const st = statSync(lock, { throwIfNoEntry: false });
    if (st && Date.now() - st.mtimeMs > STALE_LOCK_MS) rmSync(lock, { force: true });
    return false;
  }
}

async function spawnDaemon(path: string, dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  // loaded here, by the one client that starts the daemon: loading it cost every provisioner about 6 ms of CPU
  const { spawn } = await import('node:child_process');
  const idle = Number(env[DAEMON_IDLE_ENV]);
  const log = openSync(join(dir, 'daemon.log'), 'a', 0o600);
  try {
    // No environment of the caller's: the daemon must not keep a run's specs or passphrase in /proc/PID/environ.
    const child = spawn(process.execPath, [join(__dirname, 'server.js'), path, String(idle > 0 ? idle : '')], {
      detached: true,
      stdio: ['ignore', log, log],
      cwd: dir,
      env: { PATH: env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    child.unref();
  } finally {
    closeSync(log);
  }
}

async function reachDaemon(path: string, dir: string, env: NodeJS.ProcessEnv): Promise<Socket | null> {
  const deadline = Date.now() + START_WAIT_MS;
  for (;;) {
    const socket = await tryConnect(path);
    if (socket || Date.now() > deadline) return socket;
    if (takeSpawnLock(`${path}.spawn`)) await spawnDaemon(path, dir, env);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** Sends the run to the daemon and relays its output. Resolves to the exit code, or `stale` (nothing ran). */
function forward(socket: Socket, argv: readonly string[], io: CliIo, dir: string): Promise<number | 'stale'> {
  return new Promise((resolve) => {
    let code: number | undefined;
    let stale = false;
    readLines(socket, (line) => {
      let frame: DaemonFrame;
      try {
        frame = JSON.parse(line) as DaemonFrame;
      } catch {
        io.stderr(`tula-dsr: the agent daemon sent something that is not a result frame; giving up (see ${join(dir, 'daemon.log')})\n`);
        socket.destroy();
        return;
      }
      if ('out' in frame) io.stdout(frame.out);
      else if ('err' in frame) io.stderr(frame.err);
      else if ('stale' in frame) stale = true;
      else if (typeof frame.exit === 'number') code = frame.exit;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (code === undefined && stale) return resolve('stale');
      if (code === undefined) io.stderr(`tula-dsr: the agent daemon closed the connection before reporting a result (see ${join(dir, 'daemon.log')})\n`);
      resolve(code ?? 1);
    });
    const env = Object.fromEntries(Object.entries(io.env).filter((e): e is [string, string] => typeof e[1] === 'string'));
    writeFrame(socket, { v: PROTOCOL_VERSION, argv: [...argv], cwd: io.cwd, env });
  });
}

/**
 * Runs the agent in the user's daemon, starting it if needed. Resolves to the exit code, or to the reason the
 * daemon cannot be used (the caller then runs the agent itself).
 */
export async function runThroughDaemon(argv: readonly string[], io: CliIo): Promise<number | { unavailable: string }> {
  const place = runtimeDir(io.env);
  if ('problem' in place) return { unavailable: place.problem };
  const path = socketPath(place.dir, buildId());
  // a daemon that no longer runs this code answers `stale` and stops; the next attempt starts a fresh one
  for (let attempt = 0; attempt < STALE_ATTEMPTS; attempt++) {
    const socket = await reachDaemon(path, place.dir, io.env);
    if (!socket) return { unavailable: `no daemon answered on ${path} within ${START_WAIT_MS / 1000} s (see ${join(place.dir, 'daemon.log')})` };
    const code = await forward(socket, argv, io, place.dir);
    if (code !== 'stale') return code;
  }
  return { unavailable: `the daemons on ${path} kept answering that they run other code (see ${join(place.dir, 'daemon.log')})` };
}
