/**
 * Servers on 127.0.0.1 that the runtime tests start and stop themselves: real sockets, loopback only. Each helper
 * returns its port and a `close` that ends it and every connection it holds.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { Socket as UdpSocket, createSocket } from 'node:dgram';
import { IncomingMessage, Server as HttpServer, ServerResponse, createServer as createHttpServer } from 'node:http';
import { Server, Socket, createServer } from 'node:net';
import { once } from 'node:events';

export const LOOPBACK = '127.0.0.1';

export interface TcpServer {
  readonly port: number;
  /** Connections accepted so far, with the client's source port. */
  readonly accepted: { remotePort: number; at: number }[];
  /** Connections open right now. */
  open(): number;
  close(): Promise<void>;
}

async function listen(server: Server | HttpServer, port = 0): Promise<number> {
  server.listen(port, LOOPBACK);
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

function track(server: Server | HttpServer): { accepted: TcpServer['accepted']; sockets: Set<Socket> } {
  const accepted: TcpServer['accepted'] = [];
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    accepted.push({ remotePort: socket.remotePort ?? 0, at: Date.now() });
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  return { accepted, sockets };
}

async function closeServer(server: Server | HttpServer, sockets: Set<Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A TCP server; `onConnection` decides what it does with each connection (default: nothing, the client closes). */
export async function startTcpServer(onConnection: (socket: Socket) => void = () => {}, port = 0): Promise<TcpServer> {
  const server = createServer(onConnection);
  const { accepted, sockets } = track(server);
  const bound = await listen(server, port);
  return { port: bound, accepted, open: () => sockets.size, close: () => closeServer(server, sockets) };
}

export interface HttpTestServer extends TcpServer {
  /** Requests seen so far. */
  readonly requests: { method?: string; url?: string; headers: IncomingMessage['headers'] }[];
}

export async function startHttpServer(handler: (req: IncomingMessage, res: ServerResponse) => void, port = 0): Promise<HttpTestServer> {
  const requests: HttpTestServer['requests'] = [];
  const server = createHttpServer((req, res) => {
    requests.push({ method: req.method, url: req.url, headers: req.headers });
    handler(req, res);
  });
  const { accepted, sockets } = track(server);
  const bound = await listen(server, port);
  return { port: bound, accepted, requests, open: () => sockets.size, close: () => closeServer(server, sockets) };
}

/** A port nothing listens on (a server was bound to it and closed): connections are refused. */
export async function closedPort(): Promise<number> {
  const server = await startTcpServer();
  await server.close();
  return server.port;
}

export interface UdpServer {
  readonly port: number;
  readonly received: { data: Buffer; port: number }[];
  close(): Promise<void>;
}

export const LOOPBACK6 = '::1';

/** A UDP server on `address` (IPv4 or IPv6 loopback); `reply` gives the datagram to send back (undefined: stay silent). */
export async function startUdpServer(reply: (data: Buffer) => Buffer | undefined, address: string = LOOPBACK): Promise<UdpServer> {
  const socket: UdpSocket = createSocket(address.includes(':') ? 'udp6' : 'udp4');
  const received: UdpServer['received'] = [];
  socket.on('message', (data, from) => {
    received.push({ data, port: from.port });
    const answer = reply(data);
    if (answer) socket.send(answer, from.port, from.address);
  });
  socket.bind(0, address);
  await once(socket, 'listening');
  return { port: socket.address().port, received, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
}

/**
 * A TCP port whose SYNs go unanswered: a listener with a backlog of 0 that never accepts, its queue filled by one
 * connection held open. Linux drops further SYNs, so a connect times out, as to a host that has gone away.
 * (Node accepts connections by itself, so the listener is a small Python process.)
 */
export async function startSilentTcpPort(): Promise<{ port: number; close(): Promise<void> }> {
  const script = [
    'import socket, sys',
    's = socket.socket()',
    "s.bind(('127.0.0.1', 0))",
    's.listen(0)',
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.read()',
  ].join('\n');
  const child: ChildProcess = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  const filler = new Socket();
  filler.on('error', () => {});
  filler.connect(port, LOOPBACK);
  await once(filler, 'connect');
  return {
    port,
    close: async () => {
      filler.destroy();
      const exited = once(child, 'exit');
      child.stdin!.end();
      await exited;
    },
  };
}

/** TCP sockets in TIME_WAIT towards `port` on loopback, as `ss` lists them. */
export async function timeWaitTowards(port: number): Promise<number> {
  const child = spawn('ss', ['-Htan', 'state', 'time-wait', `( dport = :${port} or sport = :${port} )`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number];
  if (code !== 0) throw new Error(`ss exited with ${code}`);
  return out.split('\n').filter((l) => l.trim()).length;
}
