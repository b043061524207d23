/**
 * Local process helpers for the lab: run a command to completion, or start a background server and keep its PID.
 * Commands are argv arrays; nothing here goes through a shell unless the caller passes `sh -c` explicitly.
 */
import { spawn, ChildProcess } from 'node:child_process';

export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

export interface ExecOptions {
  /** Written to the child's stdin, which is then closed. */
  readonly input?: string;
  /** Kill the child (SIGKILL) after this many ms. Default 30 s. */
  readonly timeoutMs?: number;
  /** Extra environment on top of `LC_ALL=C` and the current environment. */
  readonly env?: Record<string, string>;
  /** Working folder. Default: the current one. */
  readonly cwd?: string;
}

/** A local command failed: carries the argv and its output, so the test log shows what went wrong. */
export class LabCommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: ExecResult,
  ) {
    super(`lab command failed (exit ${result.code}): ${argv.join(' ')}\n${result.stderr.trim()}`);
    this.name = 'LabCommandError';
  }
}

/** Runs argv to completion and resolves with its output and exit code; never throws for a non-zero exit. */
export function execFile(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: opts.cwd,
      env: { ...process.env, LC_ALL: 'C', ...opts.env },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${argv[0]}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code: code ?? (signal ? 128 + signalNumber(signal) : -1),
      });
    });
    child.stdin.on('error', () => undefined); // the child may exit without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Like {@link execFile}, but throws {@link LabCommandError} on a non-zero exit. */
export async function execOk(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const r = await execFile(argv, opts);
  if (r.code !== 0) throw new LabCommandError(argv, r);
  return r;
}

/** Runs a POSIX sh script locally with `sh -ec`; throws on failure. */
export function shOk(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
  return execOk(['sh', '-ec', script], opts);
}

function signalNumber(signal: NodeJS.Signals): number {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };
  return table[signal] ?? 0;
}

/** A background process the lab started; `stop()` kills it and waits for it to be gone. */
export interface BackgroundProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Everything it wrote to stderr so far (capped at 64 KiB). */
  stderrText(): string;
  /** Everything it wrote to stdout so far (capped at 4 MiB; read `child.stdout` for more). */
  stdoutText(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isRunning(): boolean;
  /** Sends `signal` (default SIGTERM), escalates to SIGKILL after `graceMs`, resolves once the process is reaped. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/**
 * Starts argv in the background. The child is not detached: it gets a PDEATHSIG from the caller's wrapper where
 * the caller asks for one (`setpriv --pdeathsig`), so a crashed test run does not leave servers behind.
 */
export function spawnBackground(argv: readonly string[]): BackgroundProcess {
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => {
    if (stdout.length < 4 << 20) stdout += b.toString('utf8');
  });
  child.stderr!.on('data', (b: Buffer) => {
    if (stderr.length < 65536) stderr += b.toString('utf8');
  });
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
    });
    child.on('error', () => {
      running = false;
      resolve({ code: -1, signal: null });
    });
  });
  if (child.pid === undefined) {
    // spawn reports ENOENT asynchronously (handled above); the pid is missing in that case
    throw new Error(`cannot start ${argv[0]}`);
  }
  const pid = child.pid;
  return {
    pid,
    child,
    stderrText: () => stderr,
    stdoutText: () => stdout,
    exited,
    isRunning: () => running,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 2000): Promise<void> {
      if (!running) return;
      child.kill(signal);
      const timer = setTimeout(() => {
        if (running) child.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Resolves true as soon as `predicate()` is true, or false after `timeoutMs`. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 5): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
