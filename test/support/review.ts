import { ReviewText, VIP_SECTION_PREFIX } from '../../model';

/** The whole ruleset from a balancer's review parts (the table, then every VIP's elements): one loadable nft file. */
export function joinBalancerReview(review: ReviewText): string {
  const sections = Object.keys(review)
    .filter((k) => k.startsWith(VIP_SECTION_PREFIX))
    .sort();
  return [review.ruleset, ...sections.map((k) => review[k])].join('');
}
