import { appendFileSync, chmodSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, Server, Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { main } from '../cli';
import { RUNTIME_DIR_ENV, runtimeDir } from './paths';
import { parseRequest, readLines, writeFrame } from './protocol';

/**
 * The per-user agent daemon. Terraform starts one provisioner process per host, all at once; each would pay
 * Node's start-up and the agent's module loading (about 200 ms of CPU) before any SSH work. The provisioners
 * instead hand their run to this process, which has the agent loaded and warm, and serves them concurrently.
 * It exits after `idleMs` without a client. See docs/decisions.md for the measurements.
 */
export const DEFAULT_IDLE_MS = 20_000;

function log(dir: string, line: string): void {
  try {
    appendFileSync(join(dir, 'daemon.log'), `${new Date().toISOString()} [${process.pid}] ${line}\n`, { mode: 0o600 });
  } catch {
    // the log is a courtesy; never fail a run over it
  }
}

async function handle(socket: Socket, dir: string): Promise<void> {
  const aborter = new AbortController();
  socket.on('close', () => aborter.abort());
  socket.on('error', () => aborter.abort());
  const line = await new Promise<string | null>((resolve) => {
    readLines(socket, resolve);
    socket.once('close', () => resolve(null));
  });
  if (line === null) return;
  const request = parseRequest(line);
  if (typeof request === 'string') {
    writeFrame(socket, { err: `tula-dsr: agent daemon: ${request}\n` });
    writeFrame(socket, { exit: 64 });
    socket.end();
    return;
  }
  let code: number;
  try {
    code = await main(request.argv, {
      env: request.env,
      cwd: request.cwd,
      stdout: (text) => writeFrame(socket, { out: text }),
      stderr: (text) => writeFrame(socket, { err: text }),
      signal: aborter.signal,
    });
  } catch (error) {
    log(dir, `internal error: ${(error as Error).stack ?? String(error)}`);
    writeFrame(socket, { err: `tula-dsr: internal error in the agent daemon: ${(error as Error).message}\n` });
    code = 1;
  }
  writeFrame(socket, { exit: code });
  socket.end();
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** True when a daemon answers on `path`. */
function alive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** Serves on `path` until idle; resolves once the daemon has stopped (or found another one serving). */
export async function serve(path: string, idleMs: number): Promise<void> {
  const dir = dirname(path);
  const place = runtimeDir({ [RUNTIME_DIR_ENV]: dir });
  if ('problem' in place) throw new Error(place.problem);
  let active = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const server = createServer((socket) => {
    active++;
    clearTimeout(timer);
    void handle(socket, dir).finally(() => {
      active--;
      arm();
    });
  });
  const lock = `${path}.spawn`;
  try {
    await listen(server, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    if (await alive(path)) {
      log(dir, `another daemon already serves ${path}; exiting`);
      rmSync(lock, { force: true });
      return;
    }
    rmSync(path, { force: true }); // a socket left by a daemon that died
    await listen(server, path);
  }
  chmodSync(path, 0o600);
  const ino = statSync(path).ino;
  writeFileSync(`${path}.pid`, `${process.pid}\n`, { mode: 0o600 });
  rmSync(lock, { force: true });
  log(dir, `serving ${path} (idle exit after ${idleMs} ms)`);

  const stop = (why: string) => {
    server.close();
    // only our own socket: a newer daemon may have replaced a file we took for stale
    if (statSync(path, { throwIfNoEntry: false })?.ino === ino) rmSync(path, { force: true });
    rmSync(`${path}.pid`, { force: true });
    log(dir, `stopped: ${why}`);
    stopped();
  };
  const arm = () => {
    clearTimeout(timer);
    if (active === 0) timer = setTimeout(() => stop(`idle for ${idleMs} ms`), idleMs);
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  arm();
  return done;
}

if (require.main === module) {
  const [path, idle] = process.argv.slice(2);
  serve(path, Number(idle) > 0 ? Number(idle) : DEFAULT_IDLE_MS).then(
    () => process.exit(0),
    (error) => {
      log(dirname(path ?? '.'), `cannot serve: ${(error as Error).message}`);
      process.exit(1);
    },
  );
}
