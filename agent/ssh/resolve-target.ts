/**
 * Turns an SSH target into what a connection attempt needs: the target checked with the model's own schema (the
 * same checks as synth), the host key policy, and the key material or agent socket. No network yet.
 */
import { readFileSync } from 'node:fs';
import { utils as ssh2Utils } from 'ssh2';
import { StrictSpecSchemas, checkSpec, checkSshTarget, formatIssue } from '../../model';
import { type SshTarget, DEFAULT_SSH_PORT, DEFAULT_SSH_USER, PASSPHRASE_ENV } from './target';
import { sshFail } from './errors';
import { HostKeyPolicy, parseKnownHosts, parsePinnedHostKey } from './host-key';

export interface ResolvedTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly policy: HostKeyPolicy;
  readonly auth: { readonly privateKey: Buffer; readonly passphrase?: string } | { readonly agent: string };
}

function hostKeyPolicy(t: ResolvedTarget | { host: string; port: number; user: string }, target: SshTarget): HostKeyPolicy {
  if (target.hostKey !== undefined) {
    try {
      return { kind: 'pinned', pin: parsePinnedHostKey(target.hostKey) };
    } catch (e) {
      throw sshFail(t, 'config', (e as Error).message);
    }
  }
  let text: string;
  try {
    text = readFileSync(target.knownHostsFile!, 'utf8');
  } catch (e) {
    throw sshFail(t, 'config', `cannot read knownHostsFile ${target.knownHostsFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return { kind: 'known-hosts', file: target.knownHostsFile!, entries: parseKnownHosts(text).entries };
}

function authOf(t: { host: string; port: number; user: string }, target: SshTarget, env: NodeJS.ProcessEnv): ResolvedTarget['auth'] {
  const passphrase = env[PASSPHRASE_ENV];
  if (target.privateKeyPath === undefined) {
    const sock = env.SSH_AUTH_SOCK;
    if (!sock) throw sshFail(t, 'agent', 'no privateKeyPath and no ssh-agent (SSH_AUTH_SOCK is not set): set privateKeyPath or start ssh-agent');
    return { agent: sock };
  }
  const path = target.privateKeyPath;
  let privateKey: Buffer;
  try {
    privateKey = readFileSync(path);
  } catch (e) {
    throw sshFail(t, 'private-key', `cannot read private key ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const parsed = ssh2Utils.parseKey(privateKey, passphrase);
  if (parsed instanceof Error) {
    const encrypted = /encrypted|passphrase/i.test(parsed.message);
    throw sshFail(
      t,
      'private-key',
      encrypted
        ? passphrase === undefined
          ? `private key ${path} is encrypted: put its passphrase in the environment variable ${PASSPHRASE_ENV}`
          : `cannot decrypt private key ${path} with the passphrase from ${PASSPHRASE_ENV}`
        : `${path} is not a usable private key: ${parsed.message}`,
    );
  }
  return { privateKey, passphrase };
}

/** Validates the target and loads key material and the host key policy; throws SshError (kind `config`, …). */
export function resolveTarget(target: SshTarget, env: NodeJS.ProcessEnv): ResolvedTarget {
  const t = { host: target.host, port: target.port ?? DEFAULT_SSH_PORT, user: target.user ?? DEFAULT_SSH_USER };
  const checked = checkSpec(StrictSpecSchemas.SshTargetSpecSchema, target, '(ssh target)', (spec) => checkSshTarget(spec, '(ssh target)', ''));
  if (!checked.ok) throw sshFail(t, 'config', checked.issues.map((i) => formatIssue({ ...i, path: '' }).replace(/^: /, '')).join('; '));
  return { ...t, policy: hostKeyPolicy(t, target), auth: authOf(t, target, env) };
}
