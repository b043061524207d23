import { performance } from 'node:perf_hooks';

/** The outcome of one probe: `error` says in a few words why it failed ("connection refused", "status 503 …"). */
export interface ProbeResult {
  readonly ok: boolean;
  /** Milliseconds from the start of the probe to its result, to a tenth. */
  readonly ms: number;
  readonly error?: string;
}

/** Where and how to send one probe. */
export interface ProbeOptions {
  /** The address to connect to: the runtime gives the one that reaches the backend through the VIP. */
  readonly host: string;
  readonly port: number;
  /** Local address to bind. */
  readonly localAddress?: string;
  /** Local (source) port to bind: the runtime routes probes through the VIP by their source port. */
  readonly localPort?: number;
  /** Milliseconds before the probe fails; the default is the check's timeoutSec. */
  readonly timeoutMs?: number;
  /** Ends the probe at once (as a failure, "aborted"). */
  readonly signal?: AbortSignal;
}

export type Settle = (ok: boolean, error?: string) => void;

/** The I/O of one probe, started by `attempt`. */
export interface ProbeIo {
  /** Closes every socket; called exactly once, right after the result is known. */
  dispose(): void;
  /** Why the probe failed when the time ran out (default: "timed out after N ms"). */
  timeoutReason?(timeoutMs: number): string;
}

/**
 * Runs one probe under a deadline and an abort signal: the first result wins, every later event is ignored, and
 * the sockets are closed whatever happened. The promise never rejects.
 */
export function attempt(timeoutMs: number, signal: AbortSignal | undefined, start: (settle: Settle) => ProbeIo): Promise<ProbeResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    let io: ProbeIo | undefined;
    let done = false;
    const settle: Settle = (ok, error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      io?.dispose();
      resolve({ ok, ms: Math.round((performance.now() - started) * 10) / 10, ...(error !== undefined && { error }) });
    };
    const onAbort = () => settle(false, 'aborted');
    const timer = setTimeout(() => settle(false, io?.timeoutReason?.(timeoutMs) ?? `timed out after ${timeoutMs} ms`), timeoutMs);
    if (signal?.aborted) return settle(false, 'aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      io = start(settle);
    } catch (error) {
      settle(false, describeError(error));
    }
    if (done) io?.dispose();
  });
}

/** A socket error in a few words. */
export function describeError(error: unknown, options: Pick<ProbeOptions, 'localPort'> = {}): string {
  const { code, message } = (error ?? {}) as NodeJS.ErrnoException;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset';
    case 'EHOSTUNREACH':
      return 'host unreachable';
    case 'ENETUNREACH':
      return 'network unreachable';
    case 'EADDRINUSE':
      return `local port ${options.localPort ?? '(any)'} is in use`;
    case 'EADDRNOTAVAIL':
      return 'local address not available';
    default:
      return message ?? String(error);
  }
}
