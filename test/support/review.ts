import { POOL_SECTION_PREFIX, ReviewText, VIP_SECTION_PREFIX } from '../../model';

/** The whole ruleset from a balancer's review parts (the table, every VIP's and pool's elements): one loadable nft file. */
export function joinBalancerReview(review: ReviewText): string {
  const sections = Object.keys(review)
    .filter((k) => k.startsWith(VIP_SECTION_PREFIX) || k.startsWith(POOL_SECTION_PREFIX))
    .sort();
  return [review.ruleset, ...sections.map((k) => review[k])].join('');
}
