/**
 * Python 3 programs the L2 lab runs inside its hosts, passed with `python3 -c` (nothing is written to disk).
 * They use only the standard library, so any python3 (Debian's /usr/bin/python3) will do.
 */

/**
 * A backend's servers: HTTP on each TCP port, a UDP echo on each UDP port, all bound to 0.0.0.0 and to :: (IPv6 only) (the VIPs appear
 * on lo only once tula-dsr applies). Every response names the backend.
 *
 *   GET /                -> "<name>\n"
 *   GET /big             -> 10 MiB body
 *   GET /slow?seconds=S[&release=FILE]
 *                        -> 10 MiB body spread evenly over S seconds; once FILE exists on the backend, the rest
 *                           goes at full speed (a long flow that ends when the test says so, at the latest after S)
 *   GET /hold?<name>=MS  -> "<name>\n" after MS milliseconds (this backend's own entry; 0 when it has none): a
 *                           request that keeps its connection open for as long as the test says, per backend
 *
 * Each HTTP response carries `X-Backend: <name>`. Each request is logged on stdout as
 * `REQ <epoch ms> <port> <path> <client ip>:<client port>`, each finished body as `END <epoch ms> <path> <bytes>`.
 * The UDP echo answers `<name> <payload>` from the address the datagram was sent to (IP_PKTINFO), so a client
 * that talks to a VIP gets its answer from the VIP. Prints `READY` once every socket listens.
 *
 * argv: NAME TCP_PORTS(comma list) UDP_PORTS(comma list, may be empty)
 */
export const BACKEND_SERVER_PY = String.raw`
import os, socket, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

NAME = sys.argv[1]
TCP_PORTS = [int(p) for p in sys.argv[2].split(',') if p]
UDP_PORTS = [int(p) for p in sys.argv[3].split(',') if p] if len(sys.argv) > 3 else []
BIG = 10 * 1024 * 1024
CHUNK = 64 * 1024
DATA = (NAME.encode() + b' ') * (CHUNK // (len(NAME) + 1)) + b'.' * (CHUNK % (len(NAME) + 1))
assert len(DATA) == CHUNK
IP_PKTINFO = getattr(socket, 'IP_PKTINFO', 8)
IPV6_RECVPKTINFO = getattr(socket, 'IPV6_RECVPKTINFO', 49)
IPV6_PKTINFO = getattr(socket, 'IPV6_PKTINFO', 50)
out_lock = threading.Lock()

def log(line):
    with out_lock:
        sys.stdout.write(line + '\n')
        sys.stdout.flush()

def now_ms():
    return int(time.time() * 1000)

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'
    server_version = 'tula-lab'

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        log('REQ %d %d %s %s:%d' % (now_ms(), self.server.server_address[1], url.path, self.client_address[0], self.client_address[1]))
        if url.path in ('/big', '/slow'):
            query = parse_qs(url.query)
            seconds = float(query.get('seconds', ['20'])[0]) if url.path == '/slow' else 0.0
            release = query.get('release', [''])[0]
            self.send_response(200)
            self.send_header('Content-Type', 'application/octet-stream')
            self.send_header('Content-Length', str(BIG))
            self.send_header('X-Backend', NAME)
            self.end_headers()
            chunks = BIG // CHUNK
            start = time.monotonic()
            sent = 0
            try:
                for i in range(chunks):
                    self.wfile.write(DATA)
                    sent += CHUNK
                    if seconds > 0 and release and os.path.exists(release):
                        seconds = 0.0
                    if seconds > 0:
                        delay = start + seconds * (i + 1) / chunks - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
            finally:
                log('END %d %s %d' % (now_ms(), url.path, sent))
            return
        if url.path == '/hold':
            time.sleep(float(parse_qs(url.query).get(NAME, ['0'])[0]) / 1000.0)
        body = (NAME + '\n').encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.send_header('X-Backend', NAME)
        self.end_headers()
        self.wfile.write(body)

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

def udp_echo(sock):
    while True:
        data, ancillary, _flags, addr = sock.recvmsg(65535, socket.CMSG_SPACE(12))
        local = None
        for level, kind, value in ancillary:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                _ifindex, _spec_dst, local = struct.unpack('i4s4s', value[:12])
                local = (socket.IPPROTO_IP, IP_PKTINFO, struct.pack('i4s4s', 0, local, b'\0\0\0\0'))
            elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO:
                # in6_pktinfo: the address the datagram was sent to (the VIP), then the interface index
                local = (socket.IPPROTO_IPV6, IPV6_PKTINFO, value[:16] + struct.pack('i', 0))
        reply = NAME.encode() + b' ' + data
        if local is not None:
            # the reply's source is the address the request was sent to: the VIP, not the host's own address
            sock.sendmsg([reply], [local], 0, addr)
        else:
            sock.sendto(reply, addr)

class Server6(Server):
    address_family = socket.AF_INET6

    def server_bind(self):
        # IPv6 only: IPv4 clients keep their own server (and their plain dotted-quad addresses in the log)
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

servers = [Server(('0.0.0.0', port), Handler) for port in TCP_PORTS] + [Server6(('::', port), Handler) for port in TCP_PORTS]
for server in servers:
    threading.Thread(target=server.serve_forever, daemon=True).start()
for port in UDP_PORTS:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    sock.bind(('0.0.0.0', port))
    threading.Thread(target=udp_echo, args=(sock,), daemon=True).start()
    sock6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock6.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    sock6.bind(('::', port))
    threading.Thread(target=udp_echo, args=(sock6,), daemon=True).start()
log('READY')
threading.Event().wait()
`;

/**
 * The client's traffic generator. One JSON document on stdout per run (per request in `load` mode).
 *
 *   burst  {host, port, count, concurrency, path?, timeout?, sourcePortBase?}
 *          count HTTP GETs, each on a new connection (from sourcePortBase + i when given)
 *          -> {"counts": {backend: n}, "failures": n, "errors": [...]}
 *   udp    {host, port, count, timeout?, sourcePortBase?}
 *          count datagrams, each from a new socket (from sourcePortBase + i when given) -> {"counts": {...}, "failures": n, "errors": [...]}
 *   get    {host, port, path, timeout?}
 *          one GET, body read to the end -> {"backend", "status", "bytes", "sha256", "expected", "ms", "error"?}
 *   rate   {host, port, path, rate, seconds, timeout?}
 *          open loop: a GET on a new connection every 1/rate s for `seconds`, each in its own thread, whatever
 *          the earlier ones are doing -> {"counts": {...}, "failures": n, "errors": [...], "lateMs": worst start delay}
 *   load   {host, port, workers, intervalMs, maxRequests, maxSeconds, stopFile, timeout?}
 *          GETs until stopFile exists (or a bound is hit); one line per request:
 *          {"t0": ms, "t1": ms, "backend": name|null, "ok": bool, "error"?: text}, then {"done": true, ...}
 */
export const CLIENT_PY = String.raw`
import hashlib, json, os, socket, sys, threading, time

MODE = sys.argv[1]
CFG = json.loads(sys.argv[2])
HOST = CFG['host']
PORT = int(CFG['port'])
TIMEOUT = float(CFG.get('timeout', 5))
# an IPv6 VIP: every socket of this run is IPv6
FAMILY = socket.AF_INET6 if ':' in HOST else socket.AF_INET
ANY = '::' if FAMILY == socket.AF_INET6 else '0.0.0.0'
out_lock = threading.Lock()

def emit(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + '\n')
        sys.stdout.flush()

def now_ms():
    return int(time.time() * 1000)

def http_get(path, read_body=True, source_port=0, digest=None, on_connect=None):
    """One request on a new connection: (status, headers, body bytes or length); the body also goes into digest.
    on_connect(source port) runs once the connection is up."""
    sock = socket.socket(FAMILY, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
        if source_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ANY, source_port))
        sock.connect((HOST, PORT))
        if on_connect:
            on_connect(sock.getsockname()[1])
        sock.sendall(('GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' % (path, HOST)).encode())
        buf = b''
        while b'\r\n\r\n' not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise IOError('connection closed before the response headers (%d bytes)' % len(buf))
            buf += chunk
        head, rest = buf.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        status = int(lines[0].split(' ')[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(':')
            headers[k.strip().lower()] = v.strip()
        body = bytearray(rest)
        length = len(rest)
        if digest:
            digest.update(rest)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            length += len(chunk)
            if digest:
                digest.update(chunk)
            if read_body:
                body += chunk
        expected = int(headers.get('content-length', '-1'))
        if expected >= 0 and length != expected:
            raise IOError('short body: %d of %d bytes' % (length, expected))
        return status, headers, (bytes(body) if read_body else length)
    finally:
        sock.close()

def tally(counts, errors, lock, path, source_port=0):
    """One GET; counts the backend that answered (or the status), or records the error."""
    try:
        status, headers, _ = http_get(path, read_body=False, source_port=source_port)
        name = headers.get('x-backend', '?') if status == 200 else 'status %d' % status
        with lock:
            counts[name] = counts.get(name, 0) + 1
    except Exception as e:
        with lock:
            errors.append(repr(e))

def burst():
    count = int(CFG['count'])
    path = CFG.get('path', '/')
    counts = {}
    errors = []
    lock = threading.Lock()
    todo = iter(range(count))
    # Source ports below the ephemeral range: distinct ones (the kernel may hand out a port again within a few
    # hundred connections, which would make counts depend on its choice), or a small pool that every request
    # reuses in turn, as clients behind a NAT do (sourcePorts = the pool's size)
    base = int(CFG.get('sourcePortBase', 0))
    pool_size = int(CFG.get('sourcePorts', 0))
    pause = float(CFG.get('pauseMs', 0)) / 1000
    free = list(range(base, base + pool_size))
    def worker():
        while True:
            with lock:
                i = next(todo, None)
                if i is None:
                    return
                port = free.pop(0) if pool_size else (base + i if base else 0)
            try:
                tally(counts, errors, lock, path, port)
            finally:
                if pool_size:
                    with lock:
                        free.append(port)
            if pause:
                time.sleep(pause)
    threads = [threading.Thread(target=worker) for _ in range(int(CFG.get('concurrency', 4)))]
    for t in threads: t.start()
    for t in threads: t.join()
    emit({'counts': counts, 'failures': len(errors), 'errors': errors[:10]})

def udp():
    counts = {}
    errors = []
    base = int(CFG.get('sourcePortBase', 0))
    for i in range(int(CFG['count'])):
        s = socket.socket(FAMILY, socket.SOCK_DGRAM)
        s.settimeout(TIMEOUT)
        try:
            if base:
                # a port of its own per datagram: a reused one would find its earlier flow and skew exact counts
                s.bind((ANY, base + i))
            # connected: the kernel drops a reply from any other source than the VIP
            s.connect((HOST, PORT))
            s.send(b'ping %d' % i)
            reply = s.recv(65535).decode()
            name = reply.split(' ', 1)[0]
            counts[name] = counts.get(name, 0) + 1
        except Exception as e:
            errors.append(repr(e))
        finally:
            s.close()
    emit({'counts': counts, 'failures': len(errors), 'errors': errors[:10]})

def get():
    t0 = time.monotonic()
    try:
        digest = hashlib.sha256()
        # the source port first, on a line of its own: a test can find the connection's flow entries while it runs
        status, headers, length = http_get(CFG['path'], read_body=False, digest=digest, on_connect=lambda port: emit({'connected': port}))
        emit({'backend': headers.get('x-backend'), 'status': status, 'bytes': length, 'sha256': digest.hexdigest(),
              'expected': int(headers.get('content-length', '-1')), 'ms': int((time.monotonic() - t0) * 1000)})
    except Exception as e:
        emit({'backend': None, 'status': 0, 'bytes': 0, 'expected': -1, 'ms': int((time.monotonic() - t0) * 1000), 'error': repr(e)})

def load():
    stop_file = CFG['stopFile']
    max_requests = int(CFG['maxRequests'])
    deadline = time.monotonic() + float(CFG['maxSeconds'])
    interval = float(CFG.get('intervalMs', 10)) / 1000.0
    lock = threading.Lock()
    state = {'issued': 0}
    def worker():
        while True:
            with lock:
                if state['issued'] >= max_requests or time.monotonic() > deadline or os.path.exists(stop_file):
                    return
                state['issued'] += 1
            t0 = now_ms()
            try:
                status, headers, _ = http_get('/', read_body=False)
                if status != 200:
                    raise IOError('HTTP status %d' % status)
                emit({'t0': t0, 't1': now_ms(), 'backend': headers.get('x-backend'), 'ok': True})
            except Exception as e:
                emit({'t0': t0, 't1': now_ms(), 'backend': None, 'ok': False, 'error': repr(e)})
            time.sleep(interval)
    threads = [threading.Thread(target=worker) for _ in range(int(CFG.get('workers', 4)))]
    for t in threads: t.start()
    for t in threads: t.join()
    emit({'done': True, 'issued': state['issued']})

def rate():
    path = CFG['path']
    period = 1.0 / float(CFG['rate'])
    total = int(float(CFG['seconds']) / period)
    counts = {}
    errors = []
    lock = threading.Lock()
    def one():
        tally(counts, errors, lock, path)
    threads = []
    start = time.monotonic()
    late = 0.0
    for i in range(total):
        delay = start + i * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        t = threading.Thread(target=one)
        t.start()
        threads.append(t)
    for t in threads: t.join()
    emit({'counts': counts, 'failures': len(errors), 'errors': errors[:10], 'lateMs': int(late * 1000)})

{'burst': burst, 'udp': udp, 'get': get, 'load': load, 'rate': rate}[MODE]()
`;
