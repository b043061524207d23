import { reviewDocument } from './document';
import { GITHUB_COMMENT_LIMIT, fitToLimit } from './fit';
import { renderMarkdown } from './markdown';
import { parsePlanJson } from './plan-json';
import { PlanReview, reviewPlans } from './review';
import { renderText } from './text';

export { PlanReadError, PLAN_FORMAT_MAJOR } from './plan-json';
export { GITHUB_COMMENT_LIMIT, MIN_REVIEW_CHARS } from './fit';
export { REVIEW_MARKER } from './document';
export type { PlanReview, StackReview, HostReview } from './review';
export type { ReviewWarning, WarningKind } from './warnings';

export const REVIEW_FORMATS = ['markdown', 'text'] as const;
export type ReviewFormat = (typeof REVIEW_FORMATS)[number];

export interface PlanReviewOptions {
  readonly format: ReviewFormat;
  /** The longest output allowed. @default 65536 (GitHub's comment limit) for markdown, no limit for text */
  readonly maxChars?: number;
}

export interface RenderedPlanReview {
  readonly output: string;
  readonly review: PlanReview;
  /** What was cut to fit the size limit; empty when nothing was. */
  readonly cuts: readonly string[];
}

/**
 * The review of plans as `terraform show -json PLAN` writes them (one per stack), in Markdown for a pull request
 * or text for a terminal. Everything comes from each plan's before and after values. Throws PlanReadError for a
 * plan it cannot read.
 */
export function renderPlanReview(plans: readonly { readonly source: string; readonly text: string }[], options: PlanReviewOptions): RenderedPlanReview {
  const review = reviewPlans(plans.map((p) => ({ source: p.source, plan: parsePlanJson(p.text, p.source) })));
  const render = options.format === 'markdown' ? renderMarkdown : renderText;
  const maxChars = options.maxChars ?? (options.format === 'markdown' ? GITHUB_COMMENT_LIMIT : Infinity);
  const limit = {
    maxChars,
    name:
      maxChars === GITHUB_COMMENT_LIMIT
        ? `GitHub's limit of ${GITHUB_COMMENT_LIMIT.toLocaleString('en-US')} characters per comment`
        : `${maxChars.toLocaleString('en-US')} characters (--max-chars)`,
    hint: options.format === 'markdown' ? 'run tula-dsr review --format text on the plan' : 'run it without --max-chars',
  };
  const { text, cuts } = fitToLimit(reviewDocument(review), render, limit);
  return { output: text, review, cuts };
}
