/**
 * A real OpenSSH server per lab host: keys, the config it runs with, and starting/stopping it inside the host.
 * All files live in the host's own /etc/ssh and /root (see netns.ts), as on a freshly installed machine.
 */
import { readFile } from 'node:fs/promises';
import { execOk, spawnBackground, BackgroundProcess, waitFor } from './exec';
import { enterHostArgv } from './netns';
import { shellQuote } from '../model/shell';

export interface KeyPair {
  readonly privatePath: string;
  readonly privateKey: string;
  /** The OpenSSH public key line, `ssh-ed25519 AAAA… comment`. */
  readonly publicLine: string;
}

/** Generates an ed25519 key pair without a passphrase at `path` (and `path.pub`). */
export async function generateKeyPair(path: string, comment: string): Promise<KeyPair> {
  await execOk(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  const [privateKey, pub] = await Promise.all([readFile(path, 'utf8'), readFile(`${path}.pub`, 'utf8')]);
  return { privatePath: path, privateKey, publicLine: pub.trim() };
}

export interface SshdConfigOptions {
  readonly hostname: string;
  readonly listenAddress: string;
  readonly port: number;
}

/** The sshd_config of a lab host: key-only login, root by key, no PAM (there is no systemd/logind in the lab). */
export function renderSshdConfig(o: SshdConfigOptions): string {
  return [
    `# tula-dsr lab host ${o.hostname}`,
    `ListenAddress ${o.listenAddress}:${o.port}`,
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'PidFile /run/sshd.pid',
    'UsePAM no',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'AuthorizedKeysFile .ssh/authorized_keys',
    'StrictModes yes',
    'UseDNS no',
    'PrintMotd no',
    'PrintLastLog no',
    'X11Forwarding no',
    'MaxStartups 200',
    'MaxSessions 100',
    'Subsystem sftp internal-sftp',
    'LogLevel INFO',
    '',
  ].join('\n');
}

export interface SshdProvisionOptions extends SshdConfigOptions {
  readonly hostKey: KeyPair;
  /** Public key line allowed to log in as root. */
  readonly authorizedKey: string;
}

/** Shell commands, run inside the host, that install the host key, the config and root's authorized_keys. */
export function renderSshdProvision(o: SshdProvisionOptions): string {
  return [
    // the host starts with only its own host key, like a fresh install
    'rm -f /etc/ssh/ssh_host_*',
    'umask 077',
    `printf '%s' ${shellQuote(o.hostKey.privateKey)} > /etc/ssh/ssh_host_ed25519_key`,
    'umask 022',
    `printf '%s\\n' ${shellQuote(o.hostKey.publicLine)} > /etc/ssh/ssh_host_ed25519_key.pub`,
    `printf '%s' ${shellQuote(renderSshdConfig(o))} > /etc/ssh/sshd_config`,
    'mkdir -m 0700 /root/.ssh',
    `printf '%s\\n' ${shellQuote(o.authorizedKey)} > /root/.ssh/authorized_keys`,
    'chmod 0600 /root/.ssh/authorized_keys',
  ].join('\n');
}

/** An upper bound, not a delay: 100 hosts starting at once on a shared 2-core machine took more than 5 s. */
const READY_TIMEOUT_MS = 30_000;

/**
 * Starts `sshd -D -e` inside the host and resolves once it listens. The process is the caller's to stop;
 * it gets SIGTERM if the test process dies.
 */
export async function startSshd(anchorPid: number, hostname: string, timeoutMs = READY_TIMEOUT_MS): Promise<BackgroundProcess> {
  const proc = spawnBackground(enterHostArgv(anchorPid, ['setpriv', '--pdeathsig', 'TERM', '/usr/sbin/sshd', '-D', '-e', '-f', '/etc/ssh/sshd_config']));
  const ok = await waitFor(() => /Server listening on/.test(proc.stderrText()) || !proc.isRunning(), timeoutMs);
  if (!ok || !proc.isRunning()) {
    await proc.stop('SIGKILL');
    throw new Error(`lab host ${hostname}: sshd did not start:\n${proc.stderrText().trim()}`);
  }
  return proc;
}
