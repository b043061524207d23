import type { BalancerSpec, HostSpec } from '../spec';
import { renderDiff } from '../text-diff';
import { ChangeItem, backendHostItems, balancerItems, shortReason, vipSummary } from './describe';
import { classifyResources, type HostResource, type OtherResource, type TriggerText } from './hosts';
import { Inline, code, codeList, count } from './inline';
import type { TerraformPlan } from './plan-json';
import { diffBackendHost, diffBalancer } from './spec-diff';
import { ReviewWarning, balancerWarnings, destroyedWarnings, incompleteWarning, knownAfterApplyWarning, unreadableWarning } from './warnings';

/** One readable trigger's exact diff (unified lines), as the details of a host. */
export interface TextDiff {
  readonly key: string;
  readonly lines: readonly string[];
}

/** A host the plan changes, with what changes in its configuration. */
export interface HostReview {
  readonly host: HostResource;
  /** Why, in a few words, for the summary table. */
  readonly reason: Inline;
  /** Every change, VIP by VIP (balancers) or address by address (backend hosts). */
  readonly items: readonly ChangeItem[];
  readonly diffs: readonly TextDiff[];
}

export interface TerraformCounts {
  readonly add: number;
  readonly change: number;
  readonly destroy: number;
}

export interface StackReview {
  readonly name: string;
  readonly source: string;
  readonly hosts: readonly HostReview[];
  readonly unchanged: { readonly balancers: number; readonly backends: number };
  readonly others: readonly OtherResource[];
  readonly warnings: readonly ReviewWarning[];
  readonly counts: TerraformCounts;
}

export interface PlanReview {
  readonly stacks: readonly StackReview[];
  /** Whether any plan changes anything (tula-dsr or not): the CI exit code. */
  readonly hasChanges: boolean;
}

/** Where each trigger appears in the diff: the table first, then VIPs, addresses, tunnels and the backend files. */
const TEXT_ORDER = ['ruleset', 'vip:', 'addresses', 'tunnels', 'sysctl_file', 'mss_clamp', 'boot_unit'];
const textRank = (key: string) => {
  const i = TEXT_ORDER.findIndex((k) => (k.endsWith(':') ? key.startsWith(k) : key === k));
  return i < 0 ? TEXT_ORDER.length : i;
};

function textDiff(text: TriggerText): TextDiff | undefined {
  // A sensitive value is compared but never printed.
  const hidden = (side: string | undefined, changed: boolean) => (side === undefined ? '' : `(sensitive value${changed ? ', changed' : ''}: not shown)\n`);
  const before = text.sensitive ? hidden(text.before, false) : (text.before ?? '');
  const after = text.afterUnknown
    ? '(known after apply)\n'
    : text.sensitive
      ? hidden(text.after, text.before !== undefined && text.before !== text.after)
      : (text.after ?? '');
  const diff = renderDiff(before, after, text.key, { context: 3, sides: ['before', 'after'] });
  return diff ? { key: text.key, lines: diff.replace(/\n$/, '').split('\n') } : undefined;
}

function diffsOf(host: HostResource): TextDiff[] {
  return [...host.texts].sort((a, b) => textRank(a.key) - textRank(b.key) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).flatMap((t) => textDiff(t) ?? []);
}

const specOf = (side: HostResource['before']) => (side.state === 'known' ? side.spec : undefined);

interface HostAnalysis {
  readonly review: HostReview;
  readonly warnings: readonly ReviewWarning[];
}

const balancerSpec = (spec: HostSpec | undefined) => (spec?.kind === 'balancer' ? spec : undefined);
const backendSpec = (spec: HostSpec | undefined) => (spec?.kind === 'backend' ? spec : undefined);

function analyseHost(host: HostResource, balancersAfter: readonly BalancerSpec[]): HostAnalysis {
  const warnings: ReviewWarning[] = [];
  for (const side of [host.before, host.after]) if (side.state === 'unreadable') warnings.push(unreadableWarning(host, side.problem));
  if (host.after.state === 'unknown') warnings.push(knownAfterApplyWarning(host));
  // Changes are described only when no side is unknown or unreadable (an absent side, on create or destroy, is empty).
  const describable = host.after.state !== 'unknown' && host.after.state !== 'unreadable' && host.before.state !== 'unreadable';
  const destroyed = host.action === 'destroy';
  let items: ChangeItem[] = [];
  if (host.kind === 'balancer') {
    const after = balancerSpec(specOf(host.after));
    const diff = diffBalancer(balancerSpec(specOf(host.before)), after);
    if (describable) {
      items = destroyed ? [] : host.action === 'create' && after ? createdBalancerItems(after) : balancerItems(diff);
      warnings.push(...balancerWarnings(host.name, diff, destroyed));
    }
    if (destroyed) warnings.push(...destroyedWarnings(host, balancersAfter));
  } else {
    const diff = diffBackendHost(backendSpec(specOf(host.before)), backendSpec(specOf(host.after)));
    if (describable && !destroyed) items = backendHostItems(diff);
    if (destroyed) warnings.push(...destroyedWarnings(host, balancersAfter, diff));
  }
  const diffs = diffsOf(host);
  return { review: { host, reason: reasonFor(host, items, diffs), items, diffs }, warnings };
}

function createdBalancerItems(spec: BalancerSpec): ChangeItem[] {
  return spec.vips.map((v) => ({
    text: ['VIP ', code(v.name), ` (${vipSummary(v)}) with ${count(v.backends.length, 'backend')}: `, ...codeList(v.backends.map((b) => b.name))],
  }));
}

function reasonFor(host: HostResource, items: readonly ChangeItem[], diffs: readonly TextDiff[]): Inline {
  const before = specOf(host.before);
  const after = specOf(host.after);
  const moved: Inline = host.previousAddress ? [`; moved from `, code(host.previousAddress)] : [];
  switch (host.action) {
    case 'create':
      if (host.after.state === 'unknown') return ['new; its spec is known only after apply', ...moved];
      if (after?.kind === 'balancer') return [`new balancer with ${count(after.vips.length, 'VIP')}`, ...moved];
      return [`new backend host for ${count(after?.kind === 'backend' ? after.services.length : 0, 'VIP')}`, ...moved];
    case 'destroy':
      return ['retired: ', code('tula-dsr remove'), ' undoes its configuration on the host'];
    case 'forget':
      return ['Terraform forgets it; the host keeps its configuration'];
    case 'none':
      return ['unchanged'];
    default: {
      if (host.after.state === 'unknown') return ['its spec is known only after apply', ...moved];
      if (items.length) return [...shortReason(items), ...moved];
      if (before && after && JSON.stringify(before) === JSON.stringify(after)) {
        return diffs.length
          ? ['spec unchanged; the rendered configuration differs (another tula-dsr version rendered it)', ...moved]
          : [`replaced with the same configuration${host.actionReason ? ` (${host.actionReason})` : ''}`, ...moved];
      }
      return host.action === 'other' ? [`Terraform actions: ${host.actions.join(', ')}`, ...moved] : ['configuration changed (see the exact diff)', ...moved];
    }
  }
}

const ACTION_ORDER = ['destroy', 'replace', 'update', 'other', 'create', 'forget', 'none'];

function countsOf(actions: readonly string[]): TerraformCounts {
  const n = (...kinds: string[]) => actions.filter((a) => kinds.includes(a)).length;
  return { add: n('create', 'replace'), change: n('update'), destroy: n('destroy', 'replace') };
}

/** The stack a plan belongs to: the first segment of its hosts' construct paths, else the plan's source name. */
function stackName(hosts: readonly HostResource[], source: string): string {
  const roots = new Set(hosts.flatMap((h) => (h.path ? [h.path.split('/')[0]] : [])));
  if (roots.size === 1) return [...roots][0];
  return source === '-' ? 'plan' : source.replace(/^.*\//, '').replace(/\.json$/, '');
}

export function reviewStack(source: string, plan: TerraformPlan): StackReview {
  const { hosts, others } = classifyResources(plan);
  const balancersAfter = hosts.flatMap((h) => (h.after.state === 'known' && h.after.spec.kind === 'balancer' ? [h.after.spec] : []));
  const changed = hosts.filter((h) => h.action !== 'none');
  const analyses = changed.map((h) => analyseHost(h, balancersAfter));
  const order = (h: HostResource) => ACTION_ORDER.indexOf(h.action);
  const reviews = analyses.map((a) => a.review).sort((a, b) => order(a.host) - order(b.host) || (a.host.name < b.host.name ? -1 : 1));
  const warnings = analyses.flatMap((a) => a.warnings);
  if (plan.errored || plan.complete === false) warnings.unshift(incompleteWarning(plan.errored === true));
  const unchangedHosts = hosts.filter((h) => h.action === 'none');
  return {
    name: stackName(hosts, source),
    source,
    hosts: reviews,
    unchanged: { balancers: unchangedHosts.filter((h) => h.kind === 'balancer').length, backends: unchangedHosts.filter((h) => h.kind === 'backend').length },
    others: others.filter((o) => o.action !== 'none'),
    warnings,
    counts: countsOf([...hosts, ...others].map((r) => r.action)),
  };
}

/** The review of one or more plans (one per stack), computed from each plan's before and after values. */
export function reviewPlans(plans: readonly { readonly source: string; readonly plan: TerraformPlan }[]): PlanReview {
  const stacks = plans.map((p) => reviewStack(p.source, p.plan));
  return { stacks, hasChanges: stacks.some((s) => s.hosts.length > 0 || s.others.length > 0) };
}
