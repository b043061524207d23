import { connect } from 'node:net';
import { parseStatusList, statusInList } from '../../model';
import { ProbeOptions, ProbeResult, attempt, describeError } from './attempt';
import { ResponseHead, bodyComplete, parseResponseHead } from './http-response';
import { closeProbeSocket } from './tcp';

/** A health endpoint's body is not used: at most this much of it is read, then the connection is reset. */
export const HTTP_BODY_LIMIT = 64 * 1024;

export interface HttpProbe {
  readonly path: string;
  readonly expectStatus: string;
  /** The Host header. */
  readonly host: string;
}

/** The request; path and host were validated (no space, no line break), so they are written as they are. */
export function renderHttpRequest(probe: Pick<HttpProbe, 'path' | 'host'>): string {
  return `GET ${probe.path} HTTP/1.1\r\nHost: ${probe.host}\r\nUser-Agent: tula-dsr-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n`;
}

/**
 * Passes when `GET path` answers with a status in `expectStatus` and its body (up to the limit) arrives in time.
 * It speaks HTTP/1.1 on its own socket instead of using node:http, because node:http ends the socket (a FIN) after
 * a `Connection: close` response, and a socket that has sent its FIN can no longer be reset: each probe would leave
 * a connection in TIME_WAIT or CLOSE_WAIT. Here the socket stays half-open until the reset.
 */
export function probeHttp(probe: HttpProbe, options: ProbeOptions, timeoutMs: number): Promise<ProbeResult> {
  const statuses = parseStatusList(probe.expectStatus);
  if (!statuses) throw new Error(`expectStatus ${JSON.stringify(probe.expectStatus)} was not validated`);
  return attempt(timeoutMs, options.signal, (settle) => {
    let established = false;
    let buffered = Buffer.alloc(0);
    let head: ResponseHead | undefined;
    let bodyBytes = 0;
    // the last bytes of the body, so that a final chunk split over two reads is still seen
    let tail = Buffer.alloc(0);
    const socket = connect({ host: options.host, port: options.port, localAddress: options.localAddress, localPort: options.localPort, allowHalfOpen: true });
    socket.once('connect', () => {
      established = true;
      socket.write(renderHttpRequest(probe));
    });
    socket.on('data', (chunk: Buffer) => {
      if (!head) {
        buffered = Buffer.concat([buffered, chunk]);
        const parsed = parseResponseHead(buffered);
        if (parsed === 'incomplete') return;
        if (parsed === 'invalid') return settle(false, 'invalid HTTP response');
        head = parsed;
        if (!statusInList(statuses, head.status)) return settle(false, `status ${head.status} not in ${probe.expectStatus}`);
        chunk = buffered.subarray(head.length);
      }
      bodyBytes += chunk.length;
      tail = Buffer.concat([tail, chunk.subarray(-8)]).subarray(-8);
      if (bodyBytes >= HTTP_BODY_LIMIT || bodyComplete(head, bodyBytes, tail)) settle(true);
    });
    socket.on('end', () => (head ? settle(true) : settle(false, 'connection closed before a response')));
    socket.on('error', (error) => settle(false, describeError(error, options)));
    return { dispose: () => closeProbeSocket(socket, established) };
  });
}
