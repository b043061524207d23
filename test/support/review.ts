import { POOL_SECTION_PREFIX, ReviewText, VIP_GROUP_PREFIX, VIP_SECTION_PREFIX, poolIdOfClassid, poolName, splitVipGroup } from '../../model';

/**
 * The whole ruleset from a balancer's review parts (the table, every VIP's and pool's elements): one loadable nft file.
 * A group's `MAP ELEMENT` lines are read back as the statements they stand for.
 */
export function joinBalancerReview(review: ReviewText): string {
  const sections = Object.keys(review)
    .filter((k) => [VIP_SECTION_PREFIX, VIP_GROUP_PREFIX, POOL_SECTION_PREFIX].some((prefix) => k.startsWith(prefix)))
    .sort();
  return [review.ruleset, ...sections.map((k) => (k.startsWith(VIP_GROUP_PREFIX) ? [...splitVipGroup(review[k]).values()].join('') : review[k]))].join('');
}

/** The review key of a pool, from its id as nft writes it (`major:minor`, a classid). */
export const poolSectionKeyOfClassid = (classid: string): string => `${POOL_SECTION_PREFIX}${poolName(poolIdOfClassid(classid))}`;

/** The review key of the pool a VIP uses, read from the VIP's own section (its element in the `vip_pool` map). */
export function poolSectionKeyOf(review: Readonly<Record<string, string>>, vip: string): string {
  const classid = / : ([0-9a-f]{1,4}:[0-9a-f]{1,4})$/m.exec(review[`${VIP_SECTION_PREFIX}${vip}`] ?? '');
  if (!classid) throw new Error(`no pool element in the review section of VIP ${vip}`);
  return poolSectionKeyOfClassid(classid[1]);
}

/** The review section of the pool a VIP uses. */
export const poolSectionOf = (review: Readonly<Record<string, string>>, vip: string): string => review[poolSectionKeyOf(review, vip)];
