/**
 * The probes against real servers on 127.0.0.1 that each test starts and stops: every kind passes, and fails for
 * each reason with its short message (refused, timed out, wrong status, wrong or no reply, …).
 */
import type { ResolvedHealthCheck } from '../../model';
import { runProbe } from '../../runtime/probes';
import { HTTP_BODY_LIMIT, renderHttpRequest } from '../../runtime/probes/http';
import { bodyComplete, parseResponseHead } from '../../runtime/probes/http-response';
import { LOOPBACK, LOOPBACK6, closedPort, startHttpServer, startSilentTcpPort, startTcpServer, startUdpServer, timeWaitTowards } from '../support/loopback';

const timing = { intervalSec: 2, timeoutSec: 1, fall: 3, rise: 2 };
const via = { name: 'web', ip: '10.0.1.100', port: 80 };
const tcp = (): ResolvedHealthCheck => ({ kind: 'tcp', port: 80, ...timing });
const http = (extra: Partial<Extract<ResolvedHealthCheck, { kind: 'http' }>> = {}): ResolvedHealthCheck => ({
  kind: 'http',
  port: 80,
  path: '/healthz',
  expectStatus: '200-399',
  ...timing,
  ...extra,
});
const udp = (payloadHex: string, expectHex?: string): ResolvedHealthCheck => ({
  kind: 'udp',
  port: 53,
  payloadHex,
  ...(expectHex !== undefined && { expectHex }),
  ...timing,
});

const TIMEOUT = 300;
const probe = (check: ResolvedHealthCheck, port: number, extra: { localPort?: number; signal?: AbortSignal; via?: typeof via } = {}) =>
  runProbe({ check, via: extra.via ?? via }, { host: LOOPBACK, port, timeoutMs: TIMEOUT, ...extra });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});
async function started<T extends { close(): Promise<void> }>(server: Promise<T>): Promise<T> {
  const s = await server;
  cleanups.push(() => s.close());
  return s;
}

describe('tcp', () => {
  test('GIVEN a listening server WHEN probed THEN it passes and the server saw the connection', async () => {
    const server = await started(startTcpServer());
    const result = await probe(tcp(), server.port);
    expect(result).toEqual({ ok: true, ms: expect.any(Number) });
    expect(result.ms).toBeLessThan(TIMEOUT);
    expect(server.accepted).toHaveLength(1);
  });

  test('GIVEN a closed port WHEN probed THEN it fails: connection refused', async () => {
    expect(await probe(tcp(), await closedPort())).toEqual({ ok: false, ms: expect.any(Number), error: 'connection refused' });
  });

  test('GIVEN a port whose SYNs go unanswered WHEN probed THEN it fails after the timeout: timed out after 300 ms', async () => {
    const silent = await started(startSilentTcpPort());
    const result = await probe(tcp(), silent.port);
    expect(result).toEqual({ ok: false, ms: expect.any(Number), error: 'timed out after 300 ms' });
    expect(result.ms).toBeGreaterThanOrEqual(TIMEOUT - 1);
  });

  test('GIVEN a local port WHEN probed 20 times from it THEN every probe passes from that port and no TIME_WAIT remains (the probe resets)', async () => {
    const server = await started(startTcpServer());
    const localPort = 20000 + (process.pid % 20000);
    const results = [];
    for (let i = 0; i < 20; i++) results.push(await probe(tcp(), server.port, { localPort }));
    expect(results.map((r) => r.error ?? 'ok')).toEqual(Array(20).fill('ok'));
    expect(server.accepted.map((a) => a.remotePort)).toEqual(Array(20).fill(localPort));
    expect(await timeWaitTowards(server.port)).toBe(0);
  });

  test('GIVEN a local port that a listener holds WHEN probed from it THEN it fails: local port N is in use', async () => {
    const target = await started(startTcpServer());
    const holder = await started(startTcpServer());
    expect(await probe(tcp(), target.port, { localPort: holder.port })).toEqual({
      ok: false,
      ms: expect.any(Number),
      error: `local port ${holder.port} is in use`,
    });
  });

  test('GIVEN a probe waiting on a silent port WHEN its signal aborts THEN it ends at once: aborted', async () => {
    const silent = await started(startSilentTcpPort());
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const result = await probe(tcp(), silent.port, { signal: controller.signal });
    expect(result).toEqual({ ok: false, ms: expect.any(Number), error: 'aborted' });
    expect(result.ms).toBeLessThan(TIMEOUT);
  });
});

describe('http', () => {
  test('GIVEN a 200 WHEN probed THEN it passes, with GET of the path, the VIP as Host, Connection: close', async () => {
    const server = await started(startHttpServer((_req, res) => res.end('ok')));
    expect(await probe(http(), server.port)).toEqual({ ok: true, ms: expect.any(Number) });
    expect(server.requests).toEqual([
      {
        method: 'GET',
        url: '/healthz',
        headers: { host: '10.0.1.100', connection: 'close', 'user-agent': 'tula-dsr-health-check', accept: '*/*' },
      },
    ]);
  });

  test.each<[string, Partial<Extract<ResolvedHealthCheck, { kind: 'http' }>>, typeof via, string]>([
    ['a Host header set in the check', { host: 'www.example.com' }, via, 'www.example.com'],
    ['a VIP on port 8080 and no Host header', {}, { ...via, port: 8080 }, '10.0.1.100:8080'],
    ['an IPv6 VIP and no Host header', {}, { ...via, ip: 'fd00:1::100' }, '[fd00:1::100]'],
    ['an IPv6 VIP on port 8080 and no Host header', {}, { ...via, ip: 'fd00:1::100', port: 8080 }, '[fd00:1::100]:8080'],
  ])('GIVEN %s WHEN probed THEN the Host header is right', async (_what, extra, through, host) => {
    const server = await started(startHttpServer((_req, res) => res.end()));
    await probe(http(extra), server.port, { via: through });
    expect(server.requests[0].headers.host).toBe(host);
  });

  test.each<[number, string, boolean]>([
    [200, '200-399', true],
    [399, '200-399', true],
    [204, '200,204', true],
    [301, '200,204', false],
    [503, '200-399', false],
    [599, '100-599', true],
  ])('GIVEN status %d and expectStatus %s WHEN probed THEN it passes: %s', async (status, expectStatus, ok) => {
    const server = await started(
      startHttpServer((_req, res) => {
        res.statusCode = status;
        res.end();
      }),
    );
    const result = await probe(http({ expectStatus }), server.port);
    expect(result).toEqual(ok ? { ok, ms: expect.any(Number) } : { ok, ms: expect.any(Number), error: `status ${status} not in ${expectStatus}` });
  });

  test('GIVEN a closed port WHEN probed THEN it fails: connection refused', async () => {
    expect(await probe(http(), await closedPort())).toEqual({ ok: false, ms: expect.any(Number), error: 'connection refused' });
  });

  test('GIVEN a server that never answers WHEN probed THEN it fails: timed out after 300 ms, and the connection is closed', async () => {
    const server = await started(startHttpServer(() => {}));
    const result = await probe(http(), server.port);
    expect(result).toEqual({ ok: false, ms: expect.any(Number), error: 'timed out after 300 ms' });
    await new Promise((r) => setTimeout(r, 50));
    expect(server.open()).toBe(0);
  });

  test('GIVEN a 200 whose body stalls WHEN probed THEN it fails: timed out after 300 ms', async () => {
    const server = await started(startHttpServer((_req, res) => res.write('partial')));
    expect(await probe(http(), server.port)).toEqual({ ok: false, ms: expect.any(Number), error: 'timed out after 300 ms' });
  });

  test('GIVEN a server that closes without answering WHEN probed THEN it fails: connection closed before a response', async () => {
    const server = await started(startTcpServer((socket) => socket.end()));
    expect(await probe(http(), server.port)).toEqual({ ok: false, ms: expect.any(Number), error: 'connection closed before a response' });
  });

  test('GIVEN a server that answers garbage WHEN probed THEN it fails: invalid HTTP response', async () => {
    const server = await started(startTcpServer((socket) => socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n')));
    expect(await probe(http(), server.port)).toEqual({ ok: false, ms: expect.any(Number), error: 'invalid HTTP response' });
  });

  test('GIVEN a 200 with an endless body WHEN probed THEN it passes after reading the bounded body and resets the connection', async () => {
    let written = 0;
    let reset = false;
    const chunk = Buffer.alloc(16 * 1024, 'x');
    const server = await started(
      startHttpServer((req, res) => {
        req.socket.on('error', (e: NodeJS.ErrnoException) => (reset ||= e.code === 'ECONNRESET'));
        const pump = () => {
          while (!req.socket.destroyed && written < 64 * 1024 * 1024) {
            written += chunk.length;
            if (!res.write(chunk)) return res.once('drain', pump);
          }
        };
        pump();
      }),
    );
    const result = await probe(http(), server.port);
    expect(result).toEqual({ ok: true, ms: expect.any(Number) });
    await new Promise((r) => setTimeout(r, 100));
    expect(reset).toBe(true);
    expect(written).toBeGreaterThanOrEqual(HTTP_BODY_LIMIT);
    expect(written).toBeLessThan(8 * 1024 * 1024);
  });

  test('GIVEN a local port WHEN probed twice from it THEN both pass from that port and no TIME_WAIT remains', async () => {
    const server = await started(startHttpServer((_req, res) => res.end('ok')));
    const localPort = 20000 + ((process.pid + 7) % 20000);
    expect((await probe(http(), server.port, { localPort })).ok).toBe(true);
    expect((await probe(http(), server.port, { localPort })).ok).toBe(true);
    expect(server.accepted.map((a) => a.remotePort)).toEqual([localPort, localPort]);
    expect(await timeWaitTowards(server.port)).toBe(0);
  });
});

describe('udp', () => {
  test('GIVEN a server that answers WHEN probed without expectHex THEN any reply passes, and the server got the payload', async () => {
    const server = await started(startUdpServer(() => Buffer.from('pong')));
    expect(await probe(udp('c0ffee'), server.port)).toEqual({ ok: true, ms: expect.any(Number) });
    expect(server.received.map((r) => r.data.toString('hex'))).toEqual(['c0ffee']);
  });

  test('GIVEN a reply containing the expected bytes WHEN probed THEN it passes', async () => {
    const server = await started(startUdpServer(() => Buffer.from('0001beef0002', 'hex')));
    expect(await probe(udp('00', 'beef'), server.port)).toEqual({ ok: true, ms: expect.any(Number) });
  });

  test('GIVEN a reply without the expected bytes WHEN probed THEN it fails when the time runs out, naming the replies', async () => {
    const server = await started(startUdpServer(() => Buffer.from('dead', 'hex')));
    expect(await probe(udp('00', 'beef'), server.port)).toEqual({ ok: false, ms: expect.any(Number), error: '1 reply within 300 ms, none containing beef' });
  });

  test('GIVEN a server that stays silent WHEN probed THEN it fails: no reply within 300 ms', async () => {
    const server = await started(startUdpServer(() => undefined));
    expect(await probe(udp('00'), server.port)).toEqual({ ok: false, ms: expect.any(Number), error: 'no reply within 300 ms' });
    expect(server.received).toHaveLength(1);
  });

  test('GIVEN a closed port WHEN probed THEN it fails at once: port unreachable (ICMP)', async () => {
    const server = await startUdpServer(() => undefined);
    await server.close();
    const result = await probe(udp('00'), server.port);
    expect(result).toEqual({ ok: false, ms: expect.any(Number), error: 'port unreachable' });
    expect(result.ms).toBeLessThan(TIMEOUT);
  });

  test('GIVEN an IPv6 backend (a server on ::1) WHEN probed from a local port THEN the datagram leaves from it over IPv6 and the reply passes', async () => {
    const server = await started(startUdpServer(() => Buffer.from('pong'), LOOPBACK6));
    const localPort = 20000 + ((process.pid + 17) % 20000);
    expect(await runProbe({ check: udp('c0ffee'), via }, { host: LOOPBACK6, port: server.port, timeoutMs: TIMEOUT, localPort })).toEqual({
      ok: true,
      ms: expect.any(Number),
    });
    expect(server.received.map((r) => [r.port, r.data.toString('hex')])).toEqual([[localPort, 'c0ffee']]);
  });

  test('GIVEN a local port WHEN probed THEN the datagram leaves from it', async () => {
    const server = await started(startUdpServer(() => Buffer.from('ok')));
    const localPort = 20000 + ((process.pid + 13) % 20000);
    expect((await probe(udp('00'), server.port, { localPort })).ok).toBe(true);
    expect(server.received.map((r) => r.port)).toEqual([localPort]);
  });
});

describe('reading HTTP responses', () => {
  test('GIVEN a check WHEN its request is rendered THEN it is a plain HTTP/1.1 GET that asks the server to close', () => {
    expect(renderHttpRequest({ path: '/healthz?x=1', host: '10.0.1.100' })).toBe(
      'GET /healthz?x=1 HTTP/1.1\r\nHost: 10.0.1.100\r\nUser-Agent: tula-dsr-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n',
    );
  });

  test.each<[string, string, ReturnType<typeof parseResponseHead>]>([
    ['a head with Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', { status: 200, length: 38, body: { kind: 'length', bytes: 2 } }],
    ['a chunked head', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', { status: 200, length: 47, body: { kind: 'chunked' } }],
    ['a head without length', 'HTTP/1.0 503 Service Unavailable\r\n\r\n', { status: 503, length: 36, body: { kind: 'close' } }],
    ['a 204', 'HTTP/1.1 204 No Content\r\n\r\n', { status: 204, length: 27, body: { kind: 'none' } }],
    ['a 103 before the 200', 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n', { status: 200, length: 59, body: { kind: 'close' } }],
    ['half a head', 'HTTP/1.1 200 OK\r\nContent-Le', 'incomplete'],
    ['an SSH banner', 'SSH-2.0-OpenSSH_9.2\r\n\r\n', 'invalid'],
    ['HTTP/2 text', 'HTTP/2 200\r\n\r\n', 'invalid'],
    ['a bad Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', 'invalid'],
    ['an endless head', `HTTP/1.1 200 OK\r\nX: ${'a'.repeat(17000)}`, 'invalid'],
  ])('GIVEN %s WHEN parsed THEN the head is read as expected', (_what, text, expected) => {
    expect(parseResponseHead(Buffer.from(text, 'latin1'))).toEqual(expected);
  });

  test.each<[string, number, string, boolean]>([
    ['a Content-Length body, short', 1, 'o', false],
    ['a Content-Length body, all there', 2, 'ok', true],
    ['a chunked body, last chunk seen', 12, '2\r\nok\r\n0\r\n\r\n', true],
    ['a chunked body, more to come', 7, '2\r\nok\r\n', false],
  ])('GIVEN %s WHEN checked THEN complete: %s', (what, received, tail, complete) => {
    const head = parseResponseHead(
      Buffer.from(what.includes('chunked') ? 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n'),
    );
    if (typeof head === 'string') throw new Error(head);
    expect(bodyComplete(head, received, Buffer.from(tail))).toBe(complete);
  });
});
