import { formatSshTarget } from '../../model/ssh-target';

/**
 * SSH errors as typed data first. `SshError.info` is what the CLI reports and tests assert on; `message` is the
 * human sentence. User mistakes (bad key, unknown host, no sudo rights) are reported without a stack trace:
 * print `error.message`, not `error.stack`.
 */

export type SshErrorKind =
  /** The target itself is invalid (both or neither of hostKey/knownHostsFile, bad port, unreadable known_hosts). */
  | 'config'
  /** The private key cannot be read, is not a key, or needs a passphrase we do not have. */
  | 'private-key'
  /** No private key path and no ssh-agent, or the agent failed. */
  | 'agent'
  | 'host-key-unknown'
  | 'host-key-mismatch'
  | 'host-key-revoked'
  | 'auth-failed'
  /** Connection refused, no route to host, network unreachable, name does not resolve. */
  | 'unreachable'
  | 'timeout'
  /** Key exchange failed for another reason than the host key (no common algorithm, protocol error). */
  | 'handshake-failed'
  /** The connection dropped while it was in use (or a keepalive timed out). */
  | 'connection-lost'
  /** The server refused to open an exec channel. */
  | 'channel'
  /** A remote script ran past its deadline; the channel was closed. */
  | 'run-timeout'
  /** A remote script wrote more output than a run may buffer; the channel was closed. */
  | 'output-limit'
  | 'sudo-password'
  | 'sudo-missing';

export interface SshErrorInfo {
  readonly kind: SshErrorKind;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** The human message (same as `SshError.message`). */
  readonly message: string;
  /** Connection attempts made (for connect errors). */
  readonly attempts?: number;
  /** Socket error code such as ECONNREFUSED, where there is one. */
  readonly code?: string;
  /** For host key errors: the key the host offered. */
  readonly offeredFingerprint?: string;
}

export class SshError extends Error {
  constructor(readonly info: SshErrorInfo) {
    super(info.message);
    this.name = 'SshError';
  }

  get kind(): SshErrorKind {
    return this.info.kind;
  }

  toJSON(): SshErrorInfo {
    return this.info;
  }
}

/** An SshError whose message starts with the target, as every SSH message does. */
export function sshFail(t: { user: string; host: string; port: number }, kind: SshErrorKind, message: string, extra: Partial<SshErrorInfo> = {}): SshError {
  return new SshError({ kind, host: t.host, port: t.port, user: t.user, message: `${formatSshTarget(t)}: ${message}`, ...extra });
}

/** What a socket error code means for someone trying to reach a host. */
export const SOCKET_MESSAGES: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused: is sshd running and listening on that address and port?',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name does not resolve',
  EAI_AGAIN: 'host name lookup failed temporarily',
  ECONNRESET: 'connection reset by the server before the SSH handshake completed',
  EPIPE: 'connection closed by the server before the SSH handshake completed',
  ETIMEDOUT: 'TCP connect timed out',
};

export function isSshError(e: unknown): e is SshError {
  return e instanceof SshError;
}

/**
 * Whether a connect error may go away by itself, so that retrying makes sense: refused, unreachable, timed out or
 * reset, and only before the SSH handshake completed. Never auth or host key errors.
 */
export function isRetryable(info: SshErrorInfo, beforeHandshake: boolean): boolean {
  if (!beforeHandshake) return false;
  if (info.kind === 'timeout' || info.kind === 'connection-lost') return true;
  if (info.kind !== 'unreachable') return false;
  return info.code !== 'ENOTFOUND';
}
