import { appendFileSync, chmodSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, Server, Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { AsyncLocalStorage } from 'node:async_hooks';
import { loadAgentCli } from '../bundle-loader';
import type { CliIo } from '../io';
import { RUNTIME_DIR_ENV, buildId, runtimeDir } from './paths';
import { DaemonRequest, parseRequest, readLines, writeFrame } from './protocol';

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

/** What the daemon runs for a request: the CLI, in process (tests give another to provoke faults). */
export type RunRequest = (argv: readonly string[], io: CliIo) => Promise<number>;

/** One client's run: it ends once, with one exit frame, whether the run returns, throws, or faults later. */
interface Request {
  readonly aborter: AbortController;
  /** Sends what is left to send (an internal error, then the exit code) and ends the connection; once. */
  finish(code: number, internalError?: unknown): void;
}

/** Each request's async context: a fault (an exception or rejection nothing caught) is charged to its request. */
const requests = new AsyncLocalStorage<Request>();

/**
 * Why this daemon may no longer serve a request: its code was rebuilt or upgraded since it started, or the caller
 * would run another node. The perl client's door is named after the installed package, not the build (perl cannot
 * compute buildId), so the daemon checks on every request what the node client's socket name already says.
 */
function staleness(started: string, request: DaemonRequest): string | undefined {
  if (buildId() !== started) return 'the agent was rebuilt or upgraded since this daemon started';
  if (request.node === undefined) return undefined;
  const real = (path: string) => {
    try {
      return realpathSync(path);
    } catch {
      return undefined;
    }
  };
  if (real(request.node) !== real(process.execPath)) return `the caller runs ${request.node}, this daemon ${process.execPath}`;
  return undefined;
}

async function handle(
  socket: Socket,
  dir: string,
  run: RunRequest,
  usage: number,
  finished: () => void,
  current: (request: DaemonRequest) => string | undefined,
): Promise<void> {
  let ended = false;
  const request: Request = {
    aborter: new AbortController(),
    finish(code, internalError) {
      if (ended) return;
      ended = true;
      if (internalError !== undefined) {
        const error = internalError instanceof Error ? internalError : new Error(String(internalError));
        log(dir, `internal error: ${error.stack ?? error.message}`);
        writeFrame(socket, { err: `tula-dsr: internal error in the agent daemon: ${error.message} (see ${join(dir, 'daemon.log')})\n` });
        request.aborter.abort();
      }
      writeFrame(socket, { exit: code });
      socket.end();
      finished();
    },
  };
  socket.on('close', () => request.aborter.abort());
  socket.on('error', () => request.aborter.abort());
  await requests.run(request, async () => {
    try {
      const line = await new Promise<string | null>((resolve) => {
        readLines(socket, resolve, (problem: string) => {
          writeFrame(socket, { err: `tula-dsr: agent daemon: ${problem}\n` });
          resolve(null);
        });
        socket.once('close', () => resolve(null));
      });
      if (line === null) return request.finish(usage);
      const parsed = parseRequest(line);
      if (typeof parsed === 'string') {
        writeFrame(socket, { err: `tula-dsr: agent daemon: ${parsed}\n` });
        return request.finish(usage);
      }
      const stale = current(parsed);
      if (stale !== undefined) {
        ended = true;
        writeFrame(socket, { stale });
        socket.end();
        finished();
        return;
      }
      const code = await run(parsed.argv, {
        env: parsed.env,
        cwd: parsed.cwd,
        stdout: (text) => writeFrame(socket, { out: text }),
        stderr: (text) => writeFrame(socket, { err: text }),
        signal: request.aborter.signal,
      });
      request.finish(code);
    } catch (error) {
      request.finish(1, error);
    }
  });
}

/**
 * A fault that escaped every request's own handling ends only the request it came from; the others go on. One
 * outside any request (the daemon's own code) stops it from taking new work: clients start a fresh daemon, and this
 * one exits once its runs are done.
 */
function isolateFaults(dir: string, stopTakingWork: (why: string) => void): void {
  const onFault = (fault: unknown) => {
    const request = requests.getStore();
    if (request) return request.finish(1, fault);
    log(dir, `internal error outside any request: ${fault instanceof Error ? (fault.stack ?? fault.message) : String(fault)}`);
    stopTakingWork('internal error');
  };
  process.on('uncaughtException', onFault);
  process.on('unhandledRejection', onFault);
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

/**
 * Serves on `path` until idle; resolves once the daemon has stopped (or found another one serving). Runs the CLI
 * from its bundle, compiled with the code cache, as the `tula-dsr` bin does: a daemon starts when a provisioner
 * finds none, which is at the first host of nearly every `terraform apply`.
 */
export async function serve(path: string, idleMs: number, run?: RunRequest): Promise<void> {
  const cli = loadAgentCli();
  const runRequest = run ?? cli.main;
  const dir = dirname(path);
  const place = runtimeDir({ [RUNTIME_DIR_ENV]: dir });
  if ('problem' in place) throw new Error(place.problem);
  let active = 0;
  let timer: NodeJS.Timeout | undefined;
  const build = buildId();
  let stopped: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const server = createServer((socket) => {
    active++;
    clearTimeout(timer);
    void handle(
      socket,
      dir,
      runRequest,
      cli.EXIT.usage,
      () => {
        active--;
        if (stopping && active === 0) stopped();
        arm();
      },
      (request) => {
        const why = staleness(build, request);
        if (why !== undefined) stop(`stale: ${why}`);
        return why;
      },
    );
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

  let stopping = false;
  /** Takes no new work; the daemon exits at once (SIGTERM), or once the runs in flight are done. */
  const stop = (why: string, drain = true) => {
    if (stopping) return;
    stopping = true;
    server.close();
    // only our own socket: a newer daemon may have replaced a file we took for stale
    if (statSync(path, { throwIfNoEntry: false })?.ino === ino) rmSync(path, { force: true });
    rmSync(`${path}.pid`, { force: true });
    log(dir, `stopped: ${why}${drain && active > 0 ? ` (exits once its ${active} run(s) in flight are done)` : ''}`);
    if (!drain || active === 0) stopped();
  };
  const arm = () => {
    clearTimeout(timer);
    if (active === 0 && !stopping) timer = setTimeout(() => stop(`idle for ${idleMs} ms`), idleMs);
  };
  process.once('SIGTERM', () => stop('SIGTERM', false));
  isolateFaults(dir, stop);
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
