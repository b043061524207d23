/**
 * Where and how the agent logs in to a host. This is part of the project's public surface: the model will carry
 * a zod schema with the same fields. Secrets are never part of a target: only a key *path* or the ssh-agent.
 */
export interface SshTarget {
  /** Host name or IP address. */
  readonly host: string;
  /** TCP port, default 22. */
  readonly port?: number;
  /** Login user, default `root`. Any other user runs every script through `sudo -n`. */
  readonly user?: string;
  /**
   * Path of the private key. Its passphrase, if any, comes from the environment variable
   * `TULA_DSR_SSH_PASSPHRASE`. Without a path the agent uses ssh-agent at `SSH_AUTH_SOCK`.
   */
  readonly privateKeyPath?: string;
  /** The host key pinned as `SHA256:…` (as `ssh-keygen -lf` prints it) or as an OpenSSH public key line. */
  readonly hostKey?: string;
  /** A known_hosts file to verify the host key against (plain and hashed entries, `@revoked`). */
  readonly knownHostsFile?: string;
}

export const DEFAULT_SSH_PORT = 22;
export const DEFAULT_SSH_USER = 'root';

/** Environment variable that holds the private key's passphrase. */
export const PASSPHRASE_ENV = 'TULA_DSR_SSH_PASSPHRASE';
