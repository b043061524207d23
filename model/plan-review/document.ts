import { POOL_SECTION_PREFIX, VIP_SECTION_PREFIX } from '../review';
import type { ChangeItem } from './describe';
import { Inline, code, count, joinInline, strong } from './inline';
import type { HostReview, PlanReview, StackReview, TerraformCounts } from './review';

/** A list item and the items under it. */
export interface ListItem {
  readonly text: Inline;
  readonly children?: readonly ListItem[];
}

/**
 * The review as blocks, built once and rendered as Markdown or text. `shown` on a list, table or details block is
 * set when the review is cut to a size limit: only that many items, rows or lines are rendered, with a note.
 */
export type Block =
  | { readonly kind: 'marker'; readonly text: string }
  | { readonly kind: 'heading'; readonly level: 2 | 3 | 4; readonly text: Inline }
  | { readonly kind: 'paragraph'; readonly text: Inline }
  | { readonly kind: 'alert'; readonly level: 'WARNING' | 'NOTE'; readonly items: readonly Inline[] }
  | { readonly kind: 'list'; readonly label: string; readonly items: readonly ListItem[]; readonly shown?: number }
  | {
      readonly kind: 'table';
      readonly label: string;
      readonly header: readonly string[];
      readonly rows: readonly (readonly Inline[])[];
      readonly shown?: number;
    }
  | { readonly kind: 'details'; readonly label: string; readonly summary: Inline; readonly lines: readonly string[]; readonly shown?: number };

/** The blocks a size limit may cut; `label` names them in the note that says what was cut. */
export type CuttableBlock = Extract<Block, { readonly shown?: number }>;

export type ReviewDocument = readonly Block[];

/** The hidden first line of the comment: the workflow finds the comment to update by it. */
export const REVIEW_MARKER = 'tula-dsr plan review';

const ACTION_WORDS: Readonly<Record<string, string>> = {
  create: 'created',
  replace: 'replaced',
  destroy: 'destroyed',
  update: 'updated',
  forget: 'forgotten',
  other: 'changed',
};

function actionSummary(stack: StackReview): string {
  const byAction = new Map<string, number>();
  for (const h of stack.hosts) byAction.set(h.host.action, (byAction.get(h.host.action) ?? 0) + 1);
  const parts = [...byAction.entries()].map(([action, n]) => `${count(n, 'host')} ${ACTION_WORDS[action] ?? action}`);
  const unchanged = stack.unchanged.balancers + stack.unchanged.backends;
  if (unchanged) parts.push(`${count(unchanged, 'host')} unchanged`);
  return parts.length ? parts.join(', ') : 'no tula-dsr hosts';
}

const terraformLine = (c: TerraformCounts) => `Terraform: ${c.add} to add, ${c.change} to change, ${c.destroy} to destroy.`;

function toListItems(items: readonly ChangeItem[]): ListItem[] {
  return items.map((i) => ({ text: i.text, children: i.children ? toListItems(i.children) : undefined }));
}

/** The triggers a diff covers: every key, but the per-VIP and per-pool sections counted when there are many. */
function diffKeys(keys: readonly string[]): string {
  let out = [...keys];
  for (const [prefix, what] of [
    [VIP_SECTION_PREFIX, 'VIP section'],
    [POOL_SECTION_PREFIX, 'pool section'],
  ] as const) {
    const sections = out.filter((k) => k.startsWith(prefix));
    if (sections.length <= 3) continue;
    const at = out.indexOf(sections[0]);
    const rest = out.filter((k) => !k.startsWith(prefix));
    out = [...rest.slice(0, at), `${count(sections.length, what)} (${prefix}…)`, ...rest.slice(at)];
  }
  return out.join(', ');
}

function hostBlocks(review: HostReview): Block[] {
  const { host } = review;
  const kind = host.kind === 'balancer' ? 'Balancer' : 'Backend host';
  const where: Inline = host.path ? [' (', code(host.path), ')'] : [];
  const blocks: Block[] = [{ kind: 'heading', level: 4, text: [`${kind} `, code(host.name), ...where, `: ${host.action}`] }];
  if (review.items.length) blocks.push({ kind: 'list', label: `the changes of ${host.name}`, items: toListItems(review.items) });
  else blocks.push({ kind: 'paragraph', text: review.reason });
  if (review.diffs.length) {
    const lines = review.diffs.flatMap((d) => d.lines);
    const added = lines.filter((l) => l.startsWith('+') && !l.startsWith('+++')).length;
    const removed = lines.filter((l) => l.startsWith('-') && !l.startsWith('---')).length;
    const keys = diffKeys(review.diffs.map((d) => d.key));
    blocks.push({
      kind: 'details',
      label: `the exact diff of ${host.name}`,
      summary: [`Exact diff of ${host.name}: ${keys} (+${added} −${removed} lines)`],
      lines,
    });
  }
  return blocks;
}

function stackBlocks(stack: StackReview): Block[] {
  const blocks: Block[] = [
    { kind: 'heading', level: 3, text: ['Stack ', code(stack.name)] },
    { kind: 'paragraph', text: [strong(`${actionSummary(stack)}.`), ` ${terraformLine(stack.counts)}`] },
  ];
  if (stack.warnings.length) blocks.push({ kind: 'alert', level: 'WARNING', items: stack.warnings.map((w) => w.text) });
  if (stack.hosts.length) {
    blocks.push({
      kind: 'table',
      label: `the host table of stack ${stack.name}`,
      header: ['Host', 'Kind', 'Action', 'Why'],
      rows: stack.hosts.map((h) => [[code(h.host.name)], [h.host.kind === 'balancer' ? 'balancer' : 'backend host'], [h.host.action], h.reason]),
    });
  }
  if (stack.others.length) {
    const others = stack.others.map((o) => [code(o.address), ` (${o.action === 'other' ? o.actions.join(', ') : o.action})`]);
    blocks.push({ kind: 'paragraph', text: ['Other resources in this plan: ', ...joinInline(others, ', ')] });
  }
  for (const review of stack.hosts) blocks.push(...hostBlocks(review));
  return blocks;
}

/** The whole review: a marker, a summary line across stacks, then each stack's table, warnings and hosts. */
export function reviewDocument(review: PlanReview): ReviewDocument {
  const hosts = review.stacks.reduce((n, s) => n + s.hosts.length, 0);
  const warnings = review.stacks.reduce((n, s) => n + s.warnings.length, 0);
  const summary = review.hasChanges
    ? `${count(hosts, 'tula-dsr host')} changed in ${count(review.stacks.length, 'stack')}${warnings ? `, ${count(warnings, 'warning')}` : ', no warnings'}.`
    : `No changes in ${count(review.stacks.length, 'stack')}: the hosts already match the configuration.`;
  return [
    { kind: 'marker', text: REVIEW_MARKER },
    { kind: 'heading', level: 2, text: ['tula-dsr plan review'] },
    { kind: 'paragraph', text: [strong(summary)] },
    ...review.stacks.flatMap(stackBlocks),
  ];
}
