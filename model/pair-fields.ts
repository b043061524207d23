import { z } from 'zod';
import { FieldCheck, checkBoolean, checkFilePath, checkHostKey, checkIpv4, checkName, checkPort, checkSshHost, integerIn, oneOf } from './fields';
import { showValue } from './issues';

/**
 * A balancer pair: two balancers with the same VIPs, of which keepalived (VRRPv3, unicast peers) makes one the
 * active member. Each member's spec carries its side of the pair (`pair`); both render the same nft table (the
 * hash seeds and slot tables depend on the VIPs only), and keepalived, not the agent, owns the VIP addresses.
 */
export const PAIR_ROLES = ['primary', 'secondary'] as const;
export type PairRole = (typeof PAIR_ROLES)[number];

export const PAIR_DEFAULTS = {
  /** keepalived's own default advertisement interval: a backup takes over after about 3.5 s. */
  advertIntervalSec: 1,
  primaryPriority: 150,
  secondaryPriority: 100,
  preempt: true,
  /** The TCP port on which each member's runtime takes the other's flow copies (on its `address` only). */
  flowCopyPort: 7407,
} as const;

/**
 * VRRPv3 carries the interval in centiseconds in 12 bits (RFC 5798): 0.01 s to 40.95 s. Priority 255 is the address
 * owner's and 0 means "leaving", so members use 1–254.
 */
export const PAIR_LIMITS = { advertIntervalCs: { min: 1, max: 4095 }, priority: { min: 1, max: 254 }, virtualRouterId: { min: 1, max: 255 } } as const;

export const checkVirtualRouterId: FieldCheck = integerIn(1, 255, 'an integer from 1 to 255 (unique among the VRRP routers of the segment)');
export const checkPriority: FieldCheck = integerIn(1, 254, 'an integer from 1 to 254 (255 is reserved for the address owner)');
export const checkPairRole: FieldCheck = oneOf(PAIR_ROLES, 'pair role');
export const checkAdvertIntervalSec: FieldCheck = (v) => {
  const cs = typeof v === 'number' ? Math.round(v * 100) : NaN;
  return typeof v === 'number' && Math.abs(cs - v * 100) < 1e-6 && cs >= PAIR_LIMITS.advertIntervalCs.min && cs <= PAIR_LIMITS.advertIntervalCs.max
    ? null
    : `${showValue(v)} is not allowed; use seconds from 0.01 to 40.95 in steps of 0.01 (VRRPv3 counts centiseconds)`;
};

/** How createSpecSchemas checks a field (tokens allowed where its predicate says so) and a construct path. */
export interface SpecFieldSchemas {
  readonly field: <T>(check: FieldCheck) => z.ZodCustom<T, T>;
  readonly constructPath: z.ZodCustom<string, string>;
}

/** The member's side of the pair, in its balancer spec. */
export function createPairSpecSchema({ field, constructPath }: SpecFieldSchemas) {
  return z.strictObject({
    /** The BalancerPair construct's path, written into keepalived.conf's header comment: one printable line. */
    path: constructPath,
    name: field<string>(checkName),
    role: field<PairRole>(checkPairRole),
    /** The other member's address: keepalived's unicast peer. */
    peerAddress: field<string>(checkIpv4),
    /** The other member's name, for reports. */
    peerName: field<string>(checkName),
    virtualRouterId: field<number>(checkVirtualRouterId),
    priority: field<number>(checkPriority),
    advertIntervalSec: field<number>(checkAdvertIntervalSec),
    preempt: field<boolean>(checkBoolean),
    /** The TCP port of the flow copy between the members' runtimes (both listen on it, on their own address). */
    flowCopyPort: field<number>(checkPort),
    /**
     * How the other member's SSH host key is pinned, as its `ssh` says: the flow copy accepts only the peer that proves
     * it holds that key (its ed25519 host key). Public data only, as in every SSH target.
     */
    peerSsh: z.strictObject({
      host: field<string>(checkSshHost),
      port: field<number>(checkPort),
      hostKey: field<string>(checkHostKey).optional(),
      knownHostsFile: field<string>(checkFilePath).optional(),
    }),
  });
}

export type PairSpec = z.infer<ReturnType<typeof createPairSpecSchema>>;
