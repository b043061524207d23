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
}

export type DaemonFrame = { readonly out: string } | { readonly err: string } | { readonly exit: number };

/** Calls `onLine` for each complete line received. */
export function readLines(socket: Socket, onLine: (line: string) => void): void {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
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
  return r as DaemonRequest;
}
