/**
 * The little of HTTP/1.1 a health probe needs to read: the status line and the headers that say where the body
 * ends. The probe sends `Connection: close`, so the server's FIN ends the body in every other case.
 */

/** A response head larger than this is refused (Node's own limit for the whole head is 16 KiB). */
export const HTTP_HEAD_LIMIT = 16 * 1024;

export interface ResponseHead {
  readonly status: number;
  /** Bytes of the head, up to and including the empty line. */
  readonly length: number;
  /** Where the body ends: after this many bytes, at the last chunk, or when the server closes. */
  readonly body: { readonly kind: 'none' } | { readonly kind: 'length'; readonly bytes: number } | { readonly kind: 'chunked' } | { readonly kind: 'close' };
}

const HEAD_END = Buffer.from('\r\n\r\n');

/** The first final (non-1xx) response head in `data`; 'incomplete' while it has not all arrived; 'invalid' if it is not HTTP/1.x. */
export function parseResponseHead(data: Buffer): ResponseHead | 'incomplete' | 'invalid' {
  let offset = 0;
  for (;;) {
    const end = data.indexOf(HEAD_END, offset);
    if (end < 0) return data.length - offset > HTTP_HEAD_LIMIT ? 'invalid' : 'incomplete';
    if (end - offset > HTTP_HEAD_LIMIT) return 'invalid';
    const [statusLine, ...fields] = data.toString('latin1', offset, end).split('\r\n');
    const match = /^HTTP\/1\.[01] ([1-5]\d\d)(?: |$)/.exec(statusLine);
    if (!match) return 'invalid';
    const status = Number(match[1]);
    const length = end + HEAD_END.length;
    // 1xx heads (100 Continue, 103 Early Hints) precede the final response
    if (status < 200 && status !== 101) {
      offset = length;
      continue;
    }
    const header = (name: string) =>
      fields.flatMap((f) => {
        const colon = f.indexOf(':');
        return colon > 0 && f.slice(0, colon).trim().toLowerCase() === name ? [f.slice(colon + 1).trim()] : [];
      });
    if (status === 204 || status === 304 || status === 101) return { status, length, body: { kind: 'none' } };
    if (header('transfer-encoding').some((v) => /(^|,)\s*chunked\s*$/i.test(v))) return { status, length, body: { kind: 'chunked' } };
    const contentLength = header('content-length')[0];
    if (contentLength !== undefined) {
      if (!/^\d{1,15}$/.test(contentLength)) return 'invalid';
      return { status, length, body: { kind: 'length', bytes: Number(contentLength) } };
    }
    return { status, length, body: { kind: 'close' } };
  }
}

const LAST_CHUNK = Buffer.from('0\r\n\r\n');

/** Whether `received` bytes of body (`tail` its last bytes) complete it. */
export function bodyComplete(head: ResponseHead, received: number, tail: Buffer): boolean {
  switch (head.body.kind) {
    case 'none':
      return true;
    case 'length':
      return received >= head.body.bytes;
    case 'chunked':
      // a final chunk without trailers; with trailers the server's FIN ends the body
      return tail.length >= LAST_CHUNK.length && tail.subarray(tail.length - LAST_CHUNK.length).equals(LAST_CHUNK);
    case 'close':
      return false;
  }
}
