import { StrictSpecSchemas, type HostSpec } from '../spec';
import { fastParse } from '../fast-parse';
import { configResources, type ConfigResource, type ResourceChange, type TerraformPlan } from './plan-json';
import { terraformReferences } from './references';
import { pendingExpressions, SPEC_REVIEW_KEY } from '../agent-contract';
import { specTextOfTrigger } from '../spec-packing';
import { VIP_GROUP_PREFIX, VIP_SECTION_PREFIX, fullAddressLines, rulesetWithoutGroupNote, splitVipGroup } from '../review';

/** What Terraform does to a resource, in the review's words; a replacement is create-then-delete or the reverse. */
export type HostAction = 'create' | 'replace' | 'destroy' | 'update' | 'forget' | 'none' | 'other';
export type HostKind = 'balancer' | 'backend';

/** One side of a host's spec: parsed, known only after apply, present but not readable, or absent (create/destroy). */
export type SpecSide =
  | { readonly state: 'known'; readonly spec: HostSpec }
  | { readonly state: 'unknown' }
  | { readonly state: 'unreadable'; readonly problem: string }
  | { readonly state: 'absent' };

/** One readable trigger (ruleset, vip:<name>, sysctl_file, …): the exact text on each side. */
export interface TriggerText {
  readonly key: string;
  readonly before?: string;
  readonly after?: string;
  readonly afterUnknown: boolean;
  readonly sensitive: boolean;
}

/** A tula-dsr host resource (one balancer or one backend host) as the plan changes it. */
export interface HostResource {
  readonly address: string;
  readonly previousAddress?: string;
  readonly kind: HostKind;
  readonly name: string;
  readonly path?: string;
  readonly action: HostAction;
  /** Terraform's own actions (for 'other'). */
  readonly actions: readonly string[];
  readonly actionReason?: string;
  readonly before: SpecSide;
  readonly after: SpecSide;
  readonly texts: readonly TriggerText[];
  /** Terraform references the spec waits for, when it is known only after apply. */
  readonly references: readonly string[];
}

/** Any other resource the plan changes, named so that a reviewer sees the whole plan. */
export interface OtherResource {
  readonly address: string;
  readonly action: HostAction;
  readonly actions: readonly string[];
}

const HOST_RESOURCE_TYPES: Readonly<Record<string, string>> = { null_resource: 'triggers', terraform_data: 'triggers_replace' };
/** The keys that identify a host resource; they are not readable text. */
const SPEC_KEY = 'spec';
const HASH_KEY = 'hash';
/** cdktf's logical id of a host resource: `<construct ids>_host_<8 hex digits>`. */
const LOGICAL_ID = /^(.*)_host_[0-9A-F]{8}$/;

const ACTIONS: Readonly<Record<string, HostAction>> = {
  'no-op': 'none',
  read: 'none',
  create: 'create',
  delete: 'destroy',
  update: 'update',
  'create,delete': 'replace',
  forget: 'forget',
};

/** Terraform's action list in the review's words (`create,delete` in either order is a replacement). */
export function hostAction(actions: readonly string[]): HostAction {
  return ACTIONS[[...actions].sort().join(',')] ?? 'other';
}

const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/** A map attribute's marks (after_unknown, *_sensitive): `true` marks the whole map, an object marks keys. */
function marked(marks: unknown, attribute: string, key: string): boolean {
  const value = asRecord(marks)?.[attribute];
  return value === true || asRecord(value)?.[key] === true;
}

function isTulaDsrProvisioner(config: ConfigResource | undefined): boolean {
  return (config?.provisioners ?? []).some((p) => JSON.stringify(p.expressions ?? {}).includes('tula-dsr/agent'));
}

/** Our resources: a null_resource or terraform_data whose triggers carry spec and hash, or whose provisioner runs the agent. */
function triggersAttribute(change: ResourceChange, config: ConfigResource | undefined): string | undefined {
  const attribute = HOST_RESOURCE_TYPES[change.type];
  if (!attribute) return undefined;
  const { before, after, after_unknown } = change.change;
  const hasKeys = (side: unknown) => {
    const triggers = asRecord(asRecord(side)?.[attribute]);
    return triggers !== undefined && SPEC_KEY in triggers && HASH_KEY in triggers;
  };
  return hasKeys(before) || hasKeys(after) || hasKeys(after_unknown) || isTulaDsrProvisioner(config) ? attribute : undefined;
}

function specSide(triggers: Record<string, unknown> | undefined, unknown: boolean): SpecSide {
  if (unknown) return { state: 'unknown' };
  const trigger = triggers?.[SPEC_KEY];
  if (typeof trigger !== 'string') return { state: 'absent' };
  const unpacked = specTextOfTrigger(trigger);
  if ('problem' in unpacked) return { state: 'unreadable', problem: `the compressed spec ${unpacked.problem}` };
  let value: unknown;
  try {
    value = JSON.parse(unpacked.text);
  } catch (error) {
    return { state: 'unreadable', problem: `the spec is not JSON (${(error as Error).message})` };
  }
  const fast = fastParse(StrictSpecSchemas.HostSpecSchema, value);
  if (fast) return { state: 'known', spec: fast.value };
  const parsed = StrictSpecSchemas.HostSpecSchema.safeParse(value);
  if (parsed.success) return { state: 'known', spec: parsed.data };
  const issue = parsed.error.issues[0];
  return { state: 'unreadable', problem: `the spec does not match this tula-dsr version's schema (${issue.path.join('.') || '(root)'}: ${issue.message})` };
}

function kindOf(sides: readonly SpecSide[], keys: readonly string[]): HostKind {
  for (const side of sides) if (side.state === 'known') return side.spec.kind;
  return keys.includes('ruleset') ? 'balancer' : 'backend';
}

function hostResource(change: ResourceChange, attribute: string, config: ConfigResource | undefined): HostResource {
  const { before, after, after_unknown, before_sensitive, after_sensitive, actions } = change.change;
  const action = hostAction(actions);
  const beforeTriggers = asRecord(asRecord(before)?.[attribute]);
  const afterTriggers = action === 'destroy' || action === 'forget' ? undefined : asRecord(asRecord(after)?.[attribute]);
  const afterUnknownSpec = action !== 'destroy' && action !== 'forget' && marked(after_unknown, attribute, SPEC_KEY);
  const beforeSide = specSide(beforeTriggers, false);
  const afterSide = specSide(afterTriggers, afterUnknownSpec);
  const unknownKeys = Object.keys(asRecord(asRecord(after_unknown)?.[attribute]) ?? {});
  const keys = [...new Set([...Object.keys(beforeTriggers ?? {}), ...Object.keys(afterTriggers ?? {}), ...unknownKeys])].filter(
    (k) => k !== SPEC_KEY && k !== HASH_KEY,
  );
  const keyTexts = keys.map((key) => ({
    key,
    before: typeof beforeTriggers?.[key] === 'string' ? (beforeTriggers[key] as string) : undefined,
    after: typeof afterTriggers?.[key] === 'string' ? (afterTriggers[key] as string) : undefined,
    afterUnknown: afterTriggers !== undefined && marked(after_unknown, attribute, key),
    sensitive: marked(before_sensitive, attribute, key) || marked(after_sensitive, attribute, key),
  }));
  const texts = asSmallHostTexts(keyTexts);
  const known = [afterSide, beforeSide].find((s) => s.state === 'known');
  const spec = known?.state === 'known' ? known.spec : undefined;
  const specExpression = asRecord(asRecord(config?.expressions?.[attribute])?.constant_value)?.[SPEC_KEY];
  return {
    address: change.address,
    previousAddress: change.previous_address,
    kind: kindOf([afterSide, beforeSide], keys),
    name: spec?.name ?? LOGICAL_ID.exec(change.name ?? '')?.[1] ?? change.name ?? change.address,
    path: spec?.path,
    action,
    actions,
    actionReason: change.action_reason,
    before: beforeSide,
    after: afterSide,
    texts,
    references: afterSide.state === 'unknown' ? pendingReferences(specExpression, afterTriggers?.[SPEC_REVIEW_KEY]) : [],
  };
}

/**
 * A large balancer's grouped VIP sections (`vips:<group>`) as the per-VIP texts a smaller one has (`vip:<name>`), so
 * that the review shows each VIP that changed, whatever the group it shares; a balancer that crosses the grouping
 * limit has a VIP's section under its own key on one side and in a group on the other, and that is one text. The
 * table's note on how to read a group goes too: the review shows no group. A large host's `ADDRESS DEVICE` lines are
 * shown in the form a smaller host's are, for the same reasons.
 */
function asSmallHostTexts(texts: readonly TriggerText[]): TriggerText[] {
  const byKey = new Map<string, TriggerText>();
  const add = (text: TriggerText) => {
    const seen = byKey.get(text.key);
    byKey.set(
      text.key,
      seen
        ? {
            ...seen,
            before: seen.before ?? text.before,
            after: seen.after ?? text.after,
            afterUnknown: seen.afterUnknown || text.afterUnknown,
            sensitive: seen.sensitive || text.sensitive,
          }
        : text,
    );
  };
  // each text as a small host's review has it (see rulesetWithoutGroupNote, fullAddressLines)
  const inFull = new Map<string, (text: string) => string>([
    ['ruleset', rulesetWithoutGroupNote],
    ['addresses', fullAddressLines],
  ]);
  for (const text of texts) {
    const full = inFull.get(text.key);
    if (full) add({ ...text, before: text.before && full(text.before), after: text.after && full(text.after) });
    else if (!text.key.startsWith(VIP_GROUP_PREFIX)) add(text);
    else {
      const before = splitVipGroup(text.before ?? '');
      const after = splitVipGroup(text.after ?? '');
      const names = [...new Set([...before.keys(), ...after.keys()])].sort();
      if (names.length === 0) add(text);
      for (const name of names) add({ ...text, key: `${VIP_SECTION_PREFIX}${name}`, before: before.get(name), after: after.get(name) });
    }
  }
  return [...byKey.values()];
}

/**
 * What a spec known only after apply waits for: the references of its expression, where the spec template is a local
 * (which a plan's configuration does not show) those that the review trigger names for each token.
 */
function pendingReferences(specExpression: unknown, review: unknown): string[] {
  const direct = typeof specExpression === 'string' ? terraformReferences(specExpression) : [];
  const viaReview = typeof review === 'string' ? pendingExpressions(review).flatMap((e) => terraformReferences(`\${${e}}`)) : [];
  return [...new Set([...direct.filter((r) => !r.startsWith('local.')), ...viaReview])].sort();
}

/** Splits a plan's resource changes into tula-dsr hosts and everything else. */
export function classifyResources(plan: TerraformPlan): { hosts: HostResource[]; others: OtherResource[] } {
  const config = configResources(plan);
  const hosts: HostResource[] = [];
  const others: OtherResource[] = [];
  for (const change of plan.resource_changes ?? []) {
    const resourceConfig = config.get(change.address.replace(/\[[^\]]*\]$/, ''));
    const attribute = triggersAttribute(change, resourceConfig);
    if (attribute) hosts.push(hostResource(change, attribute, resourceConfig));
    else others.push({ address: change.address, action: hostAction(change.change.actions), actions: change.change.actions });
  }
  return { hosts, others };
}
