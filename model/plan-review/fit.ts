import type { Block, CuttableBlock, ReviewDocument } from './document';
import { plainText } from './inline';

/** GitHub refuses comments longer than this many characters. */
export const GITHUB_COMMENT_LIMIT = 65_536;
/** Below this a review cannot hold its own summary. */
export const MIN_REVIEW_CHARS = 2_000;

/** The fewest items, rows or lines a cut leaves, by kind: diffs may vanish, summaries keep a few lines. */
const FLOOR: Readonly<Record<CuttableBlock['kind'], number>> = { details: 0, list: 3, table: 10 };
/** Diffs go first, then change lists, then table rows. */
const CUT_ORDER: readonly CuttableBlock['kind'][] = ['details', 'list', 'table'];

const isCuttable = (b: Block): b is CuttableBlock => b.kind === 'details' || b.kind === 'list' || b.kind === 'table';
const unitsOf = (b: CuttableBlock) => (b.kind === 'details' ? b.lines.length : b.kind === 'list' ? b.items.length : b.rows.length);
const shownOf = (b: CuttableBlock) => b.shown ?? unitsOf(b);
const unitCost = (b: CuttableBlock, i: number) =>
  b.kind === 'details'
    ? b.lines[i].length + 1
    : b.kind === 'list'
      ? plainText(b.items[i].text).length + 8
      : b.rows[i].reduce((n, c) => n + plainText(c).length + 3, 2);
const shownCost = (b: CuttableBlock) => Array.from({ length: shownOf(b) }, (_, i) => unitCost(b, i)).reduce((a, c) => a + c, 0);

export interface FitResult {
  readonly text: string;
  /** What was cut, for the note; empty when the review fit as it was. */
  readonly cuts: readonly string[];
}

/**
 * Renders the review within `maxChars`: past it, the longest diffs are cut first (down to none), then the longest
 * change lists and tables, and a note at the top says what was cut and how to see everything. Whole sections are
 * left out last, so the Markdown stays well formed (no fence or <details> left open).
 */
export interface FitLimit {
  readonly maxChars: number;
  /** The limit as the note names it: "GitHub's limit of 65,536 characters per comment". */
  readonly name: string;
  /** How to see everything: "run … on the plan". */
  readonly hint: string;
}

export function fitToLimit(doc: ReviewDocument, render: (doc: ReviewDocument) => string, limit: FitLimit): FitResult {
  const { maxChars } = limit;
  const full = render(doc);
  if (full.length <= maxChars) return { text: full, cuts: [] };
  const blocks = [...doc];
  const withNote = (bs: readonly Block[]) => {
    const cuts = bs.flatMap((b, i) => (isCuttable(b) && shownOf(b) < unitsOf(b) ? [describeCut(b, doc[i] as CuttableBlock)] : []));
    return { doc: insertNote(bs, cuts, limit), cuts };
  };
  for (;;) {
    const { doc: noted, cuts } = withNote(blocks);
    const text = render(noted);
    const over = text.length - maxChars;
    if (over <= 0) return { text, cuts };
    const target = pickTarget(blocks);
    if (target === undefined) return leaveOutSections(noted, render, limit, cuts);
    const b = blocks[target] as CuttableBlock;
    let shown = shownOf(b);
    let saved = 0;
    // Margin for the note growing by one line and for escaping that the cost estimate does not see.
    while (shown > FLOOR[b.kind] && saved < over + 200) saved += unitCost(b, --shown);
    blocks[target] = { ...b, shown };
  }
}

/** The cuttable block to shrink next: by kind in CUT_ORDER, the one showing the most characters. */
function pickTarget(blocks: readonly Block[]): number | undefined {
  for (const kind of CUT_ORDER) {
    let best: number | undefined;
    blocks.forEach((b, i) => {
      if (!isCuttable(b) || b.kind !== kind || shownOf(b) <= FLOOR[kind]) return;
      if (best === undefined || shownCost(b) > shownCost(blocks[best] as CuttableBlock)) best = i;
    });
    if (best !== undefined) return best;
  }
  return undefined;
}

function describeCut(b: CuttableBlock, original: CuttableBlock): string {
  const noun = b.kind === 'details' ? 'lines' : b.kind === 'list' ? 'items' : 'rows';
  const shown = shownOf(b);
  return shown === 0
    ? `${b.label}: left out (${unitsOf(original).toLocaleString('en-US')} ${noun})`
    : `${b.label}: ${shown.toLocaleString('en-US')} of ${unitsOf(original).toLocaleString('en-US')} ${noun} shown`;
}

function insertNote(blocks: readonly Block[], cuts: readonly string[], limit: FitLimit): Block[] {
  if (!cuts.length) return [...blocks];
  const note: Block = {
    kind: 'alert',
    level: 'NOTE',
    items: [[`This review was shortened to fit ${limit.name}; ${limit.hint} to see everything. Cut: ${cuts.join('; ')}.`]],
  };
  const at = blocks.findIndex((b) => b.kind === 'paragraph');
  return [...blocks.slice(0, at + 1), note, ...blocks.slice(at + 1)];
}

/** Last resort: the first sections that fit, and a line saying how many were left out. */
function leaveOutSections(doc: readonly Block[], render: (doc: ReviewDocument) => string, limit: FitLimit, cuts: readonly string[]): FitResult {
  const { maxChars } = limit;
  const ending = (left: number): Block => ({ kind: 'paragraph', text: [`${left} more sections left out to fit ${limit.name}.`] });
  let low = 0;
  let high = doc.length - 1;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (render([...doc.slice(0, mid), ending(doc.length - mid)]).length <= maxChars) low = mid;
    else high = mid - 1;
  }
  const text = render([...doc.slice(0, low), ending(doc.length - low)]);
  return { text: text.length <= maxChars ? text : text.slice(0, maxChars), cuts: [...cuts, `${doc.length - low} sections left out`] };
}
