import type { PairSpec } from '../model';

/**
 * The primary's side of a balancer pair whose secondary is `peerAddress` (SSH host key `peerHostKey`), with the
 * constructs' defaults: what tests and benches give a balancer spec to make it a pair member without synthesizing a
 * stack.
 */
export function primarySide(peerAddress: string, peerHostKey: string, path = 't/edge'): PairSpec {
  return {
    path,
    name: 'edge',
    role: 'primary',
    peerAddress,
    peerName: 'lb2',
    virtualRouterId: 51,
    priority: 150,
    advertIntervalSec: 1,
    preempt: true,
    flowCopyPort: 7407,
    peerSsh: { host: peerAddress, port: 22, hostKey: peerHostKey },
  };
}
