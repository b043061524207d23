import { DefaultTokenResolver, Fn, StringConcat, Tokenization } from 'cdktf';
import { IConstruct } from 'constructs';
import { escapeTemplate, pendingValue, sha256Hex, stableJson } from '../model';
import { isUnresolved } from './issues';

/**
 * How a host's spec reaches the agent through Terraform: the `spec` trigger, which the provisioner hands over, and
 * `hash`, the generation (sha256 of exactly that text).
 *
 * Without tokens the spec JSON is the trigger itself (escaped with the other triggers, or written to a file, see
 * triggersAttribute). With tokens (values Terraform resolves), the spec JSON is a template in which each token's value
 * is written by Terraform's own `jsonencode()`: whatever a value holds (quotes, backslashes, line breaks, `}`), it
 * arrives as one JSON value and can never add keys or objects to the spec. That template is a local, so that `spec`
 * and `hash` are built from the same text; `review` shows the plan what synth knows, with each token named.
 */
export type SpecTrigger =
  | {
      /** The spec's JSON, as Terraform reads the trigger back. */
      readonly text: string;
      readonly hash: string;
    }
  | {
      /** The `spec` trigger: a reference to the local. */
      readonly spec: string;
      readonly hash: string;
      /** The spec as synth knows it, each token shown by `pendingValue`. */
      readonly review: string;
      /** The template of the local that `spec` and `hash` refer to. */
      readonly template: string;
    };

/** A string no spec value can be (construct paths have no control characters; other fields have patterns). */
const placeholder = (index: number) => `\u0000tula-token-${index}\u0000`;
/** The placeholder as stableJson writes it, quotes included. */
const PLACEHOLDER_JSON = /"\\u0000tula-token-(\d+)\\u0000"/g;

/**
 * A copy of `value` with every token replaced by a placeholder, the tokens collected in order. Spec objects are plain
 * data: only a resolvable object can be a token among them (cdktf's general test also scans every key, which costs
 * a fifth of a large balancer's synth).
 */
function withPlaceholders(value: unknown, tokens: unknown[]): unknown {
  const token = value !== null && typeof value === 'object' && !Array.isArray(value) ? Tokenization.isResolvable(value) : isUnresolved(value);
  if (token) {
    tokens.push(value);
    return placeholder(tokens.length - 1);
  }
  if (Array.isArray(value)) return value.map((v) => withPlaceholders(v, tokens));
  if (value !== null && typeof value === 'object') {
    const copy: Record<string, unknown> = {};
    for (const key of Object.keys(value)) copy[key] = withPlaceholders((value as Record<string, unknown>)[key], tokens);
    return copy;
  }
  return value;
}

/** The Terraform expression a token stands for: `var.backend_ip`, or a template such as `10.0.${var.x}`. */
function referenceOf(scope: IConstruct, token: unknown): string {
  const resolved = String(Tokenization.resolve(token, { scope, resolver: new DefaultTokenResolver(new StringConcat()) }));
  return /^\$\{([^{}]*)\}$/.exec(resolved)?.[1] ?? resolved;
}

/**
 * The most lines a spec keeps its indented form for. Terraform's time for a string in a configuration grows with
 * the square of its lines (measured with Terraform 1.11: one 1,000-line trigger value 0.9 s to plan, 2,000 lines
 * 2.1 s, ten of 1,000 lines 7.3 s), and a balancer's indented spec has about 36 lines per VIP: 300 VIPs took 45 s
 * to plan. A larger spec is written on one line. Smaller specs keep the indented text, so upgrading does not
 * change their generation (no replacement of an unchanged stack); a larger one is replaced once.
 */
export const SPEC_INDENTED_MAX_LINES = 1000;

/** The spec's JSON text: indented while that stays small for Terraform, else on one line. */
export function specJson(value: unknown): string {
  const indented = stableJson(value);
  let lines = 1;
  for (let at = indented.indexOf('\n'); at >= 0 && lines <= SPEC_INDENTED_MAX_LINES; at = indented.indexOf('\n', at + 1)) lines++;
  return lines <= SPEC_INDENTED_MAX_LINES ? indented : stableJson(value, 0);
}

/** The triggers that carry `spec`; `localName` names the local that holds the template when the spec has tokens. */
export function specTrigger(scope: IConstruct, spec: object, localName: string): SpecTrigger {
  const tokens: unknown[] = [];
  const text = specJson(withPlaceholders(spec, tokens));
  if (tokens.length === 0) return { text, hash: sha256Hex(text) };
  const literal = escapeTemplate(text);
  // Fn.jsonencode gives a token that cdktf writes as `${jsonencode(<reference>)}`, an interpolation of the template
  const template = literal.replace(PLACEHOLDER_JSON, (_, i: string) => Fn.jsonencode(tokens[Number(i)]));
  const review = literal.replace(PLACEHOLDER_JSON, (_, i: string) => escapeTemplate(JSON.stringify(pendingValue(referenceOf(scope, tokens[Number(i)])))));
  return { spec: `\${local.${localName}}`, hash: `\${sha256(local.${localName})}`, review, template };
}

/** The template of the local for a spec with tokens, or undefined for a spec without (whose JSON is not built). */
export function specTemplate(scope: IConstruct, spec: object, localName: string): string | undefined {
  const tokens: unknown[] = [];
  withPlaceholders(spec, tokens);
  return tokens.length === 0 ? undefined : templateOf(specTrigger(scope, spec, localName));
}

/** The template of the local, for a spec with tokens. */
export function templateOf(trigger: SpecTrigger): string | undefined {
  return 'template' in trigger ? trigger.template : undefined;
}
