/**
 * One SSH connection per host (ssh2 `Client`), with host key verification that fails closed, retries only for
 * transient network errors before the handshake, and `run()`, which executes a whole POSIX sh script in a single
 * exec channel (one round trip).
 */
import { readFileSync } from 'node:fs';
import { Client, ClientChannel, ConnectConfig, utils as ssh2Utils } from 'ssh2';
import { type SshTarget, DEFAULT_SSH_PORT, DEFAULT_SSH_USER, PASSPHRASE_ENV } from './target';
import { SshError, SshErrorInfo, SshErrorKind, isRetryable } from './errors';
import {
  HostKeyDecision,
  HostKeyPolicy,
  parseKnownHosts,
  parsePinnedHostKey,
  preferredHostKeyAlgorithms,
  verifyHostKey,
} from './host-key';
import { renderCommand } from '../shell';

export interface ConnectOptions {
  /** Time allowed for TCP connect, handshake and authentication, per attempt. Default 10 000 ms. */
  readonly timeoutMs?: number;
  /** Extra attempts after a refused/unreachable/timed-out connection (never after auth or host key errors). Default 2. */
  readonly retries?: number;
  /** Delay before the first retry; doubles each time. Default 250 ms. */
  readonly retryDelayMs?: number;
  /** SSH keepalive interval. Default 5 000 ms; the connection counts as lost after `keepaliveCountMax` misses. */
  readonly keepaliveIntervalMs?: number;
  /** Default 3. */
  readonly keepaliveCountMax?: number;
  /** Run scripts through `sudo -n`. Default: when the user is not root. */
  readonly sudo?: boolean;
  /** Where `TULA_DSR_SSH_PASSPHRASE` and `SSH_AUTH_SOCK` are read. Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunOptions {
  /** Bytes the script reads on its standard input. */
  readonly stdin?: string | Buffer;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  /** Exit status; 128 + signal number if the script was killed by a signal. */
  readonly code: number;
  /** Signal name (`TERM`, …) if the script was killed by one. */
  readonly signal?: string;
}

/** Host key algorithms ssh2 offers by default, in its order. */
const DEFAULT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

interface Resolved {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly policy: HostKeyPolicy;
  readonly auth: { readonly privateKey: Buffer; readonly passphrase?: string } | { readonly agent: string };
}

/** The `user@host:port` prefix of every message. */
function label(t: { user: string; host: string; port: number }): string {
  return `${t.user}@${t.host}:${t.port}`;
}

function fail(t: { user: string; host: string; port: number }, kind: SshErrorKind, message: string, extra: Partial<SshErrorInfo> = {}): SshError {
  return new SshError({ kind, host: t.host, port: t.port, user: t.user, message: `${label(t)}: ${message}`, ...extra });
}

/** Validates the target and loads key material and the host key policy; no network yet. */
function resolveTarget(target: SshTarget, env: NodeJS.ProcessEnv): Resolved {
  const t = { host: target.host, port: target.port ?? DEFAULT_SSH_PORT, user: target.user ?? DEFAULT_SSH_USER };
  if (typeof t.host !== 'string' || t.host.trim() === '') throw fail(t, 'config', 'host is empty');
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) {
    throw fail(t, 'config', `port ${t.port} is invalid: use an integer from 1 to 65535`);
  }
  if (t.user === '') throw fail(t, 'config', 'user is empty');

  const hasPin = target.hostKey !== undefined;
  const hasFile = target.knownHostsFile !== undefined;
  if (hasPin === hasFile) {
    throw fail(
      t,
      'config',
      hasPin
        ? 'both hostKey and knownHostsFile are set: give exactly one'
        : 'no host key to verify against: set hostKey (\'SHA256:…\' or a public key line) or knownHostsFile',
    );
  }
  let policy: HostKeyPolicy;
  if (hasPin) {
    try {
      policy = { kind: 'pinned', pin: parsePinnedHostKey(target.hostKey!) };
    } catch (e) {
      throw fail(t, 'config', (e as Error).message);
    }
  } else {
    let text: string;
    try {
      text = readFileSync(target.knownHostsFile!, 'utf8');
    } catch (e) {
      throw fail(t, 'config', `cannot read knownHostsFile ${target.knownHostsFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    policy = { kind: 'known-hosts', file: target.knownHostsFile!, entries: parseKnownHosts(text).entries };
  }

  const passphrase = env[PASSPHRASE_ENV];
  let auth: Resolved['auth'];
  if (target.privateKeyPath !== undefined) {
    const path = target.privateKeyPath;
    let privateKey: Buffer;
    try {
      privateKey = readFileSync(path);
    } catch (e) {
      throw fail(t, 'private-key', `cannot read private key ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const parsed = ssh2Utils.parseKey(privateKey, passphrase);
    if (parsed instanceof Error) {
      const encrypted = /encrypted|passphrase/i.test(parsed.message);
      throw fail(
        t,
        'private-key',
        encrypted
          ? passphrase === undefined
            ? `private key ${path} is encrypted: put its passphrase in the environment variable ${PASSPHRASE_ENV}`
            : `cannot decrypt private key ${path} with the passphrase from ${PASSPHRASE_ENV}`
          : `${path} is not a usable private key: ${parsed.message}`,
      );
    }
    auth = { privateKey, passphrase };
  } else {
    const sock = env.SSH_AUTH_SOCK;
    if (!sock) {
      throw fail(t, 'agent', 'no privateKeyPath and no ssh-agent (SSH_AUTH_SOCK is not set): set privateKeyPath or start ssh-agent');
    }
    auth = { agent: sock };
  }
  return { ...t, policy, auth };
}

const SOCKET_MESSAGES: Record<string, string> = {
  ECONNREFUSED: 'connection refused: is sshd running and listening on that address and port?',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name does not resolve',
  EAI_AGAIN: 'host name lookup failed temporarily',
  ECONNRESET: 'connection reset by the server before the SSH handshake completed',
  EPIPE: 'connection closed by the server before the SSH handshake completed',
  ETIMEDOUT: 'TCP connect timed out',
};

interface AttemptFailure {
  readonly error: SshError;
  readonly retryable: boolean;
}

/** One connection attempt; rejects with an AttemptFailure. */
function attempt(r: Resolved, opts: Required<Omit<ConnectOptions, 'env' | 'sudo'>>): Promise<{ client: Client; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let decision: HostKeyDecision | undefined;
    let handshakeDone = false;
    let settled = false;
    const settleFail = (kind: SshErrorKind, message: string, extra: Partial<SshErrorInfo> = {}) => {
      if (settled) return;
      settled = true;
      const error = fail(r, kind, message, extra);
      client.destroy();
      reject({ error, retryable: isRetryable(error.info, !handshakeDone) } satisfies AttemptFailure);
    };

    client.on('handshake', () => {
      handshakeDone = true;
    });
    client.on('ready', () => {
      if (settled) return;
      if (!decision || !decision.ok) {
        // fail closed even if the library ever skipped our verifier
        return settleFail(decision?.kind ?? 'handshake-failed', decision?.message ?? 'the host key was never verified');
      }
      settled = true;
      resolve({ client, fingerprint: decision.offeredFingerprint });
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (decision && !decision.ok) {
        return settleFail(decision.kind, decision.message, { offeredFingerprint: decision.offeredFingerprint });
      }
      switch (err.level) {
        case 'client-socket': {
          const code = err.code ?? '';
          const kind: SshErrorKind =
            code === 'ETIMEDOUT' ? 'timeout' : code === 'ECONNRESET' || code === 'EPIPE' ? 'connection-lost' : 'unreachable';
          return settleFail(kind, SOCKET_MESSAGES[code] ?? `socket error: ${err.message}`, { code });
        }
        case 'client-timeout':
          return settleFail(
            'timeout',
            handshakeDone
              ? `timed out after ${opts.timeoutMs} ms during authentication`
              : `timed out after ${opts.timeoutMs} ms waiting for the SSH handshake`,
          );
        case 'client-authentication':
          return settleFail(
            'auth-failed',
            `authentication failed: the server did not accept ${'agent' in r.auth ? 'any key from ssh-agent' : 'the private key'} for user "${r.user}"`,
          );
        case 'agent':
          return settleFail('agent', `ssh-agent failed: ${err.message}`);
        case 'client-dns':
          return settleFail('unreachable', SOCKET_MESSAGES.ENOTFOUND, { code: 'ENOTFOUND' });
        default:
          return settleFail(handshakeDone ? 'connection-lost' : 'handshake-failed', `SSH handshake failed: ${err.message}`);
      }
    });
    client.on('close', () => {
      if (decision && !decision.ok) return settleFail(decision.kind, decision.message, { offeredFingerprint: decision.offeredFingerprint });
      settleFail('connection-lost', handshakeDone ? 'connection closed during authentication' : 'connection closed before the SSH handshake completed');
    });

    const config: ConnectConfig = {
      host: r.host,
      port: r.port,
      username: r.user,
      readyTimeout: opts.timeoutMs,
      keepaliveInterval: opts.keepaliveIntervalMs,
      keepaliveCountMax: opts.keepaliveCountMax,
      algorithms: { serverHostKey: preferredHostKeyAlgorithms(r.host, r.port, r.policy, DEFAULT_HOST_KEY_ALGORITHMS) as never },
      hostVerifier: (key: Buffer) => {
        decision = verifyHostKey(r.host, r.port, key, r.policy);
        return decision.ok;
      },
      ...('agent' in r.auth ? { agent: r.auth.agent } : { privateKey: r.auth.privateKey, passphrase: r.auth.passphrase }),
    };
    try {
      client.connect(config);
      // small request/response exchanges: without this, Nagle + delayed ACK add ~40 ms to every run()
      client.setNoDelay(true);
    } catch (e) {
      settleFail('config', (e as Error).message);
    }
  });
}

/**
 * Connects to the target: verifies the host key (fail closed), authenticates with the key file or ssh-agent, and
 * retries with exponential backoff only for refused / unreachable / timed-out attempts before the handshake.
 */
export async function connect(target: SshTarget, options: ConnectOptions = {}): Promise<SshConnection> {
  const env = options.env ?? process.env;
  const r = resolveTarget(target, env);
  const opts = {
    timeoutMs: options.timeoutMs ?? 10_000,
    retries: options.retries ?? 2,
    retryDelayMs: options.retryDelayMs ?? 250,
    keepaliveIntervalMs: options.keepaliveIntervalMs ?? 5_000,
    keepaliveCountMax: options.keepaliveCountMax ?? 3,
  };
  const sudo = options.sudo ?? r.user !== 'root';
  for (let n = 1; ; n++) {
    try {
      const { client, fingerprint } = await attempt(r, opts);
      return new SshConnection(client, r, fingerprint, sudo, n);
    } catch (e) {
      const f = e as AttemptFailure;
      if (!(f?.error instanceof SshError)) throw e;
      if (!f.retryable || n > opts.retries) {
        const info = f.error.info;
        const suffix = info.kind === 'unreachable' || info.kind === 'timeout' || info.kind === 'connection-lost' ? ` (${n} attempt${n === 1 ? '' : 's'})` : '';
        throw new SshError({ ...info, message: info.message + suffix, attempts: n });
      }
      await new Promise((res) => setTimeout(res, opts.retryDelayMs * 2 ** (n - 1)));
    }
  }
}

const SUDO_PASSWORD = /^sudo: (a password is required|a terminal is required to read the password.*)$/m;
const SUDO_MISSING = /sudo: (command )?not found/;

/** Wraps the script so that it is parsed completely before anything runs, and feeds it `stdin` if given. */
export function wrapScript(script: string, stdin?: string | Buffer): string {
  const body = script.endsWith('\n') ? script : `${script}\n`;
  if (stdin === undefined) {
    // a truncated transfer is a syntax error (no closing brace), so a half-received script never runs
    return `{\n${body}} </dev/null\n`;
  }
  const data = Buffer.from(stdin).toString('base64').replace(/.{1,76}/g, '$&\n');
  return `tula_dsr_stdin() {\nbase64 -d <<'TULA_DSR_STDIN'\n${data}TULA_DSR_STDIN\n}\ntula_dsr_stdin | {\n${body}}\n`;
}

export class SshConnection {
  /** Exec channels opened so far: one per `run()`. */
  roundTrips = 0;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  private lost: SshError | undefined;
  private closed = false;
  private socketClosed = false;
  /** Resolves when the underlying connection has closed, for whatever reason. */
  readonly whenClosed: Promise<void>;

  constructor(
    private readonly client: Client,
    target: { host: string; port: number; user: string },
    /** The verified host key fingerprint. */
    readonly hostKeyFingerprint: string,
    /** Whether scripts run through `sudo -n`. */
    readonly sudo: boolean,
    /** Attempts it took to connect. */
    readonly attempts: number,
  ) {
    this.host = target.host;
    this.port = target.port;
    this.user = target.user;
    client.on('error', (err: Error) => {
      this.lost ??= fail(this, 'connection-lost', `connection lost: ${err.message}`);
    });
    this.whenClosed = new Promise((resolve) => {
      client.on('close', () => {
        this.socketClosed = true;
        if (!this.closed) this.lost ??= fail(this, 'connection-lost', 'connection closed by the server');
        resolve();
      });
    });
  }

  /** Whether `run()` can still be used. */
  get open(): boolean {
    return !this.closed && !this.socketClosed && this.lost === undefined;
  }

  /**
   * The remote command: `/bin/sh -s` reading the script from stdin, through `sudo -n` for non-root users. The full
   * paths matter on busybox hosts, whose applets run ahead of $PATH: a busybox `env` would start busybox's own sh.
   */
  get command(): string {
    return renderCommand(this.sudo ? ['/usr/bin/env', 'LC_ALL=C', 'sudo', '-n', '/bin/sh', '-s'] : ['/usr/bin/env', 'LC_ALL=C', '/bin/sh', '-s']);
  }

  /**
   * Runs a POSIX sh script on the host in one exec channel and resolves with its output and exit code. A non-zero
   * exit is a result, not an error. Throws SshError for sudo needing a password, a missing sudo, or a lost connection.
   */
  run(script: string, opts: RunOptions = {}): Promise<RunResult> {
    if (this.lost) return Promise.reject(this.lost);
    if (this.closed) return Promise.reject(fail(this, 'connection-lost', 'connection is closed'));
    this.roundTrips++;
    return new Promise((resolve, reject) => {
      this.client.exec(this.command, (err: Error | undefined, stream: ClientChannel) => {
        if (err) {
          reject(this.lost ?? fail(this, 'channel', `cannot open an exec channel: ${err.message}`));
          return;
        }
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        let exit: { code: number | null; signal?: string } | undefined;
        stream.on('data', (b: Buffer) => out.push(b));
        stream.stderr.on('data', (b: Buffer) => errOut.push(b));
        stream.on('exit', (code: number | null, signal?: string) => {
          exit = { code, signal };
        });
        stream.on('close', () => {
          const stdout = Buffer.concat(out).toString('utf8');
          const stderr = Buffer.concat(errOut).toString('utf8');
          if (!exit) {
            reject(this.lost ?? fail(this, 'connection-lost', 'the script ended without an exit status (connection lost?)'));
            return;
          }
          if (this.sudo && exit.code === 1 && stdout === '' && SUDO_PASSWORD.test(stderr)) {
            reject(
              fail(
                this,
                'sudo-password',
                `sudo needs a password for user "${this.user}" (sudo said: ${stderr.trim().replace(/^sudo: /, '')}): ` +
                  `allow passwordless sudo (NOPASSWD) for this user, or log in as root`,
              ),
            );
            return;
          }
          if (this.sudo && exit.code === 127 && stdout === '' && SUDO_MISSING.test(stderr)) {
            reject(fail(this, 'sudo-missing', `sudo is not installed, but user "${this.user}" is not root: install sudo or log in as root`));
            return;
          }
          const signal = exit.signal ?? undefined;
          resolve({
            stdout,
            stderr,
            code: exit.code ?? 128 + signalNumber(signal),
            ...(signal ? { signal } : {}),
          });
        });
        stream.end(wrapScript(script, opts.stdin));
      });
    });
  }

  /** Closes the connection; resolves once it is closed. Idempotent. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    if (this.socketClosed) return Promise.resolve();
    return new Promise((resolve) => {
      this.client.once('close', () => resolve());
      this.client.end();
      setTimeout(() => {
        this.client.destroy();
        resolve();
      }, 1000).unref();
    });
  }
}

const SIGNALS: Record<string, number> = { HUP: 1, INT: 2, QUIT: 3, KILL: 9, PIPE: 13, ALRM: 14, TERM: 15 };

function signalNumber(signal: string | undefined): number {
  return (signal && SIGNALS[signal.replace(/^SIG/, '')]) || 0;
}

/**
 * At most one connection per `user@host:port`; concurrent `get()`s share the same connect. A connection that
 * failed or closed is dropped, so the next `get()` connects again.
 */
export class ConnectionPool {
  private readonly conns = new Map<string, Promise<SshConnection>>();

  constructor(private readonly options: ConnectOptions = {}) {}

  get(target: SshTarget): Promise<SshConnection> {
    const key = `${target.user ?? DEFAULT_SSH_USER}@${target.host}:${target.port ?? DEFAULT_SSH_PORT}`;
    let p = this.conns.get(key);
    if (!p) {
      const created = connect(target, this.options);
      const forget = () => {
        if (this.conns.get(key) === created) this.conns.delete(key);
      };
      // a failed or later lost connection is not handed out again: the next get() connects anew
      created.then((c) => c.whenClosed.then(forget), forget);
      this.conns.set(key, created);
      p = created;
    }
    return p;
  }

  /** Total exec round trips over all connections. */
  async roundTrips(): Promise<number> {
    const conns = await Promise.allSettled(this.conns.values());
    return conns.reduce((n, c) => n + (c.status === 'fulfilled' ? c.value.roundTrips : 0), 0);
  }

  async closeAll(): Promise<void> {
    const conns = await Promise.allSettled(this.conns.values());
    this.conns.clear();
    await Promise.all(conns.map((c) => (c.status === 'fulfilled' ? c.value.close() : undefined)));
  }
}
