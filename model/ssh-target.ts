/**
 * How tula-dsr reaches a host over SSH. The same shape serves balancers and backend hosts. It lands in the
 * Terraform resource's triggers (destroy-time provisioners may only read `self`), so it holds no secrets: a key
 * *path* or the ssh-agent, never key material.
 */
export interface SshTarget {
  /** IPv4 address or DNS name of the host; may be a Terraform token such as `instance.privateIp`. */
  readonly host: string;
  /**
   * SSH port.
   * @default 22
   */
  readonly port?: number;
  /**
   * Login user. A user other than root runs every command through `sudo -n`.
   * @default 'root'
   */
  readonly user?: string;
  /**
   * Path of the private key on the machine that runs Terraform. A passphrase, if any, is read from the
   * environment variable TULA_DSR_SSH_PASSPHRASE at apply time.
   * @default - the ssh-agent at SSH_AUTH_SOCK
   */
  readonly privateKeyPath?: string;
  /**
   * Pinned host key: a `SHA256:…` fingerprint (`ssh-keygen -lf`) or an OpenSSH public key line.
   * Exactly one of hostKey and knownHostsFile is required: host keys are always verified.
   * @default - none; then knownHostsFile is required
   */
  readonly hostKey?: string;
  /**
   * A known_hosts file that lists the host's key (plain or hashed entries).
   * @default - none; then hostKey is required
   */
  readonly knownHostsFile?: string;
}

/** `user@host:port`, as every message and report names an SSH target. */
export function formatSshTarget(t: { readonly user: string; readonly host: string; readonly port: number }): string {
  return `${t.user}@${t.host}:${t.port}`;
}
