/**
 * Test support: connections shared by `user@host:port`, for tests that talk to many lab hosts at once. The agent
 * itself opens one connection per host run.
 */
import { formatSshTarget } from '../../model/ssh-target';
import { connect, ConnectOptions, SshConnection } from '../../agent/ssh/connection';
import { DEFAULT_SSH_PORT, DEFAULT_SSH_USER, type SshTarget } from '../../agent/ssh/target';

/**
 * At most one connection per `user@host:port`; concurrent `get()`s share the same connect. A connection that
 * failed or closed is dropped, so the next `get()` connects again.
 */
export class ConnectionPool {
  private readonly conns = new Map<string, Promise<SshConnection>>();

  constructor(private readonly options: ConnectOptions = {}) {}

  get(target: SshTarget): Promise<SshConnection> {
    const key = formatSshTarget({ user: target.user ?? DEFAULT_SSH_USER, host: target.host, port: target.port ?? DEFAULT_SSH_PORT });
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
