/**
 * The flow copy's trust: a pair member's runtime accepts the other member only when it proves it holds the ed25519
 * host key that the other member's `ssh` pins (a fingerprint or key line in `hostKey`, or its entries in
 * `knownHostsFile`). The agent reads that pin where Terraform runs and hands the runtime the accepted fingerprints.
 */
import { readFileSync } from 'node:fs';
import type { BalancerSpec, PairSpec } from '../../model';
import { hostMatches, parseKnownHosts, parsePinnedHostKey } from '../ssh/host-key';
import { Task, failed, ok } from './task';

export type PeerKeys = { readonly keys: readonly string[] } | { readonly problem: string };

const ED25519 = 'ssh-ed25519';

/** The fingerprints of the peer's ed25519 host key as its SSH target pins it. */
export function peerHostKeys(peer: PairSpec['peerSsh'], resolvePath: (path: string) => string = (p) => p): PeerKeys {
  const why = `the flow copy authenticates the other member by its ed25519 SSH host key (${ED25519})`;
  if (peer.hostKey !== undefined) {
    let pin;
    try {
      pin = parsePinnedHostKey(peer.hostKey);
    } catch (error) {
      return { problem: (error as Error).message };
    }
    if (pin.kind === 'key' && pin.keyType !== ED25519)
      return { problem: `the other member's hostKey pins an ${pin.keyType} key; ${why}: pin that one (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)` };
    return { keys: [pin.fingerprint] };
  }
  const file = resolvePath(peer.knownHostsFile ?? '');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return { problem: `cannot read the other member's knownHostsFile ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` };
  }
  const entries = parseKnownHosts(text).entries.filter((e) => hostMatches(e.hosts, peer.host, peer.port));
  const revoked = new Set(entries.filter((e) => e.marker === 'revoked').map((e) => e.fingerprint));
  const keys = [...new Set(entries.filter((e) => e.marker === null && e.keyType === ED25519 && !revoked.has(e.fingerprint)).map((e) => e.fingerprint))];
  if (!keys.length) return { problem: `${file} lists no ${ED25519} key for ${peer.host}:${peer.port}; ${why}: add it (ssh-keyscan -t ed25519 ${peer.host})` };
  return { keys };
}

/** A failed task when the peer's key cannot be known (nothing is changed then); ok with what is accepted. */
export function flowCopyPeerTask(spec: BalancerSpec, peerKeys: PeerKeys): Task {
  const name = `flow copy peer ${spec.pair!.peerName}`;
  if ('problem' in peerKeys) return failed(name, peerKeys.problem);
  return ok(name, `accepts ${spec.pair!.peerAddress}:${spec.pair!.flowCopyPort} by its ed25519 host key ${peerKeys.keys.join(' or ')}`);
}
