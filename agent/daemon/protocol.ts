import type { Socket } from 'node:net';

/**
 * One JSON object per line over the daemon's Unix socket. The client sends one request; the daemon answers with
 * output frames and ends with the exit code.
 */
export const PROTOCOL_VERSION = 1;

export interface DaemonRequest {
  readonly v: number;
  readonly argv: string[];
  readonly cwd: string;
  readonly env: Record<string, string>;
  /** The node the caller would run the agent with; a daemon running another answers `stale`. */
  readonly node?: string;
}

/**
 * Output, the exit code, or `stale`: the daemon no longer runs the caller's code (rebuilt, upgraded, another node),
 * has run nothing, and stops taking work; the caller starts a fresh one.
 */
export type DaemonFrame = { readonly out: string } | { readonly err: string } | { readonly exit: number } | { readonly stale: string };

/**
 * The largest request the daemon reads: its environment carries the gzipped spec (a balancer with 10,000 VIPs is
 * well under 1 MB of it), so this bounds what one client can make the shared daemon hold, not what a spec may be.
 */
export const MAX_REQUEST_BYTES = 64 * 1024 * 1024;

/**
 * Calls `onLine` for each complete line received. With `tooLong`, a line longer than `maxBytes` (counted in
 * characters) stops the reading, and `tooLong` gets the reason.
 */
export function readLines(socket: Socket, onLine: (line: string) => void, tooLong?: (problem: string) => void, maxBytes = MAX_REQUEST_BYTES): void {
  let buffered = '';
  let refused = false;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    // the rest of a refused line is read and dropped, so that the sender can finish writing and see the answer
    if (refused) return;
    buffered += chunk;
    // only the new chunk can hold a line end: the buffer before it had none (scanning all of it each time is quadratic)
    if (!chunk.includes('\n')) {
      if (tooLong && buffered.length > maxBytes) {
        refused = true;
        buffered = '';
        tooLong(`the request is longer than ${maxBytes / 1048576} MiB`);
      }
      return;
    }
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line) onLine(line);
    }
  });
}

export function writeFrame(socket: Socket, frame: DaemonRequest | DaemonFrame): void {
  if (!socket.destroyed) socket.write(`${JSON.stringify(frame)}\n`);
}

/** The request, or what is wrong with it. */
export function parseRequest(line: string): DaemonRequest | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return 'the request is not JSON';
  }
  const r = value as Partial<DaemonRequest>;
  if (r?.v !== PROTOCOL_VERSION) return `protocol version ${JSON.stringify(r?.v)} is not ${PROTOCOL_VERSION}`;
  if (!Array.isArray(r.argv) || !r.argv.every((a) => typeof a === 'string')) return 'argv must be a list of strings';
  if (typeof r.cwd !== 'string' || !r.cwd.startsWith('/')) return 'cwd must be an absolute path';
  if (typeof r.env !== 'object' || r.env === null || !Object.values(r.env).every((e) => typeof e === 'string')) return 'env must map names to strings';
  if (r.node !== undefined && (typeof r.node !== 'string' || !r.node.startsWith('/'))) return 'node must be an absolute path';
  return r as DaemonRequest;
}
