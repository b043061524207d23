/**
 * One SSH connection per host (ssh2 `Client`): host key verification that fails closed, retries only for
 * transient network errors before the handshake, and `run()`, which executes a whole POSIX sh script in a single
 * exchange with the host's shell (one round trip; the connection's shell serves its runs in turn, see
 * shell-channel.ts). The target is checked and its keys loaded by resolve-target.ts.
 */
import { Client, ClientChannel, ConnectConfig } from 'ssh2';
import type { SshTarget } from './target';
import { SOCKET_MESSAGES, SshError, SshErrorInfo, SshErrorKind, isRetryable, sshFail as fail } from './errors';
import { HostKeyDecision, preferredHostKeyAlgorithms, verifyHostKey } from './host-key';
import { ResolvedTarget, resolveTarget } from './resolve-target';
import { ShellChannel } from './shell-channel';
import { renderCommand } from '../../model/shell';
import { handshakeSlots } from './handshake-slots';

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
  /** Default deadline of each `run()`, see RunOptions.timeoutMs. Default DEFAULT_RUN_TIMEOUT_MS. */
  readonly runTimeoutMs?: number;
  /** Default output cap of each `run()`, see RunOptions.maxOutputBytes. Default DEFAULT_MAX_OUTPUT_BYTES. */
  readonly maxOutputBytes?: number;
  /** Once aborted, the attempt in flight is dropped and no other starts: connect() rejects (kind `connection-lost`). */
  readonly signal?: AbortSignal;
}

/**
 * A remote script that has not ended by then is given up (its channel closed). Generous: an apply may first wait
 * up to 120 s for another run's lock, and a balancer with 10,000 VIPs applies in well under a minute.
 */
export const DEFAULT_RUN_TIMEOUT_MS = 600_000;
/** stdout and stderr together; the facts of a balancer with 10,000 VIPs are a few MB, with drift listings a few more. */
export const DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024 * 1024;

export interface RunOptions {
  /** Bytes the script reads on its standard input. */
  readonly stdin?: string | Buffer;
  /** The run fails with `run-timeout` (its channel closed) when the script has not ended after this long. */
  readonly timeoutMs?: number;
  /** The run fails with `output-limit` (its channel closed) once the script wrote more than this. */
  readonly maxOutputBytes?: number;
  /**
   * Called once the script is on its way to the host, so that work done then overlaps the host's run of it (the
   * output waits in the channel meanwhile). It must not throw.
   */
  readonly onWritten?: () => void;
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

interface AttemptFailure {
  readonly error: SshError;
  readonly retryable: boolean;
}

/** One connection attempt; rejects with an AttemptFailure. */
function attempt(
  r: ResolvedTarget,
  opts: Required<Omit<ConnectOptions, 'env' | 'sudo' | 'runTimeoutMs' | 'maxOutputBytes' | 'signal'>>,
  signal?: AbortSignal,
): Promise<{ client: Client; fingerprint: string }> {
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
    const onAbort = () => settleFail('connection-lost', 'connection abandoned: the caller no longer needs it');
    signal?.addEventListener('abort', onAbort, { once: true });
    client.once('close', () => signal?.removeEventListener('abort', onAbort));
    client.on('ready', () => {
      if (settled) return;
      if (!decision || !decision.ok) {
        // fail closed even if the library ever skipped our verifier
        return settleFail(decision?.kind ?? 'handshake-failed', decision?.message ?? 'the host key was never verified');
      }
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      resolve({ client, fingerprint: decision.offeredFingerprint });
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (decision && !decision.ok) {
        return settleFail(decision.kind, decision.message, { offeredFingerprint: decision.offeredFingerprint });
      }
      switch (err.level) {
        case 'client-socket': {
          const code = err.code ?? '';
          const kind: SshErrorKind = code === 'ETIMEDOUT' ? 'timeout' : code === 'ECONNRESET' || code === 'EPIPE' ? 'connection-lost' : 'unreachable';
          return settleFail(kind, SOCKET_MESSAGES[code] ?? `socket error: ${err.message}`, { code });
        }
        case 'client-timeout':
          return settleFail(
            'timeout',
            handshakeDone ? `timed out after ${opts.timeoutMs} ms during authentication` : `timed out after ${opts.timeoutMs} ms waiting for the SSH handshake`,
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
      // Only the method the target names. ssh2 would first try `none`, which no server that lets root in by key accepts:
      // one more round trip and one more request for sshd to refuse, on every connection (about 7 ms a handshake in
      // the lab, 37 → 30 ms).
      authHandler: ['agent' in r.auth ? 'agent' : 'publickey'],
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
  const abandoned = () => fail(r, 'connection-lost', 'connection abandoned: the caller no longer needs it');
  for (let n = 1; ; n++) {
    if (options.signal?.aborted) throw abandoned();
    try {
      const release = await handshakeSlots.take();
      let connected: Awaited<ReturnType<typeof attempt>>;
      try {
        if (options.signal?.aborted) throw { error: abandoned(), retryable: false } satisfies AttemptFailure;
        connected = await attempt(r, opts, options.signal);
      } finally {
        release();
      }
      const { client, fingerprint } = connected;
      const limits = { timeoutMs: options.runTimeoutMs ?? DEFAULT_RUN_TIMEOUT_MS, maxOutputBytes: options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES };
      return new SshConnection(client, r, fingerprint, sudo, n, limits);
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

export class SshConnection {
  /** Runs so far: each `run()` is one round trip. */
  roundTrips = 0;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  private lost: SshError | undefined;
  private closed = false;
  private socketClosed = false;
  /** The shell the last run left waiting for the next (see ShellChannel). */
  private idle: ShellChannel | undefined;
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
    /** What each `run()` allows unless it says otherwise. */
    private readonly limits: { readonly timeoutMs: number; readonly maxOutputBytes: number } = {
      timeoutMs: DEFAULT_RUN_TIMEOUT_MS,
      maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES,
    },
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
   * sudo's messages are matched, so sudo runs in the C locale; root's shell replaces itself with sh (`exec`, which
   * every login shell has), and the script sets the C locale itself (wrapScript): one process fewer per run, which
   * counts when a hundred hosts start theirs at once.
   */
  get command(): string {
    return this.sudo ? renderCommand(['/usr/bin/env', 'LC_ALL=C', 'sudo', '-n', '/bin/sh', '-s']) : 'exec /bin/sh -s';
  }

  /**
   * Runs a POSIX sh script on the host in one round trip (in the connection's waiting shell, or a new exec channel
   * when none waits) and resolves with its output and exit code. A non-zero
   * exit is a result, not an error. Throws SshError for sudo needing a password, a missing sudo, a lost connection,
   * a script past its deadline (`run-timeout`) or one that writes more than a run buffers (`output-limit`); the last
   * two close the channel, and keepalives cannot hold a run open.
   */
  run(script: string, opts: RunOptions = {}): Promise<RunResult> {
    if (this.lost) return Promise.reject(this.lost);
    if (this.closed) return Promise.reject(fail(this, 'connection-lost', 'connection is closed'));
    this.roundTrips++;
    const timeoutMs = opts.timeoutMs ?? this.limits.timeoutMs;
    const maxOutputBytes = opts.maxOutputBytes ?? this.limits.maxOutputBytes;
    return new Promise((resolve, reject) => {
      // The deadline counts from the request: a server that never opens the channel is given up too. A stopped run
      // settles at once; the script on the host may go on (an apply script finishes or rolls back by itself).
      let stopped: SshError | undefined;
      let shell: ShellChannel | undefined;
      const stop = (error: SshError) => {
        if (stopped) return;
        stopped = error;
        clearTimeout(deadline);
        shell?.close();
        reject(error);
      };
      const deadline = setTimeout(
        () =>
          stop(
            fail(
              this,
              'run-timeout',
              `the remote script did not end within ${timeoutMs / 1000} s, so tula-dsr closed its channel (set a longer deadline with --run-timeout or TULA_DSR_RUN_TIMEOUT, in seconds)`,
            ),
          ),
        timeoutMs,
      );
      this.shell((err, taken) => {
        if (stopped) {
          if (taken) this.release(taken);
          return;
        }
        if (err || !taken) {
          clearTimeout(deadline);
          reject(this.lost ?? fail(this, 'channel', `cannot open an exec channel: ${err?.message}`));
          return;
        }
        shell = taken;
        let received = 0;
        taken.exchange(script, opts.stdin, {
          onChunk: (bytes) => {
            received += bytes;
            if (received <= maxOutputBytes) return true;
            stop(
              fail(
                this,
                'output-limit',
                `the remote script wrote more than ${maxOutputBytes / 1048576} MiB, so tula-dsr closed its channel; tula-dsr's own scripts write far less: check what the login runs on that host (a profile that prints without end?)`,
              ),
            );
            return false;
          },
          onDone: (result) => {
            clearTimeout(deadline);
            this.release(taken);
            resolve(result);
          },
          onClosed: ({ stdout, stderr, exit }) => {
            clearTimeout(deadline);
            if (stopped) return;
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
          },
        });
        opts.onWritten?.();
      });
    });
  }

  /** An idle shell of this connection, or a new one. */
  private shell(then: (err: Error | undefined, shell?: ShellChannel) => void): void {
    const idle = this.idle;
    this.idle = undefined;
    if (idle && !idle.closed) return then(undefined, idle);
    this.client.exec(this.command, (err: Error | undefined, stream: ClientChannel) => then(err, err ? undefined : new ShellChannel(stream)));
  }

  /** Keeps a shell whose run is done for the next run; one idle shell per connection is enough. */
  private release(shell: ShellChannel): void {
    if (shell.closed) return;
    if (this.idle || this.closed) shell.end();
    else this.idle = shell;
  }

  /** Closes the connection; resolves once it is closed. Idempotent. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.idle?.end();
    this.idle = undefined;
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
