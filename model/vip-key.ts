import type { VipSpec } from './spec';

/** What identifies a VIP on a balancer: no two VIPs of one balancer may share it. */
export type VipIdentity = Pick<VipSpec, 'ip' | 'protocol' | 'port'>;

/** The identity as people read it (messages, reports, reviews): `10.0.1.100 tcp/80`, `10.0.1.102 udp/*`. */
export function vipKey(vip: VipIdentity): string {
  return `${vip.ip} ${vip.protocol}/${vip.port}`;
}

/** The identity as an nft map key: `ip . protocol . port`, or `ip . protocol` for an all-port ('*') VIP. */
export function nftVipKey(vip: VipIdentity): string {
  return vip.port === '*' ? `${vip.ip} . ${vip.protocol}` : `${vip.ip} . ${vip.protocol} . ${vip.port}`;
}
