import { Token } from 'cdktf';
import { IConstruct } from 'constructs';
import { createSpecSchemas, SpecIssue, checkSpec, unknownKeyMessage } from '../model';
import type { z } from 'zod';

/**
 * Whether a value is a Terraform token. cdktf's own test is costly for numbers (it decodes every double), so plain
 * values are ruled out first: a string token always contains `${`, and a number token is an encoded double of huge
 * magnitude.
 */
export const isUnresolved = (v: unknown): boolean => {
  if (typeof v === 'string' && !v.includes('${')) return false;
  if (typeof v === 'number' && Math.abs(v) < 1e200) return false;
  if (typeof v === 'boolean' || v === undefined || v === null) return false;
  return Token.isUnresolved(v);
};

/** Schemas that accept Terraform tokens; the agent validates those values with the strict twin at apply time. */
export const SynthSchemas = createSpecSchemas(isUnresolved);

/** Parses a construct's candidate spec; on failure returns the issues (so synth can report all of them at once). */
export function parseCandidate<S extends z.ZodType>(schema: S, candidate: unknown, path: string): { value?: z.infer<S>; issues: SpecIssue[] } {
  const result = checkSpec(schema, candidate, path);
  return result.ok ? { value: result.value, issues: [] } : { issues: result.issues };
}

/**
 * Registers a validation that reports the issues belonging to this construct; cdktf prefixes each message with
 * the construct path, so the message carries the field, the bad value and what is allowed.
 */
export function reportIssues(construct: IConstruct, issues: () => readonly SpecIssue[]): void {
  construct.node.addValidation({
    validate: () => {
      const messages = issues()
        .filter((i) => i.path === construct.node.path)
        .map((i) => `${i.field}: ${i.message}`);
      if (messages.length) createErrorsWithoutFramesUntilSynthEnds();
      return messages;
    },
  });
}

let framesSuppressed = false;

/**
 * cdktf turns failed validations into one Error, thrown from inside `app.synth()`. An app that does not catch it
 * prints that Error's stack after the list of problems: a dozen frames inside cdktf that say nothing about the
 * mistake, which each construct path already locates. So once a problem is reported, errors are created without
 * frames until the synchronous synth has ended (the next microtask), when the previous limit comes back; cdktf
 * itself sets and restores the limit the same way to capture creation stacks.
 */
function createErrorsWithoutFramesUntilSynthEnds(): void {
  if (framesSuppressed) return;
  framesSuppressed = true;
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  queueMicrotask(() => {
    Error.stackTraceLimit = limit;
    framesSuppressed = false;
  });
}

/** Copies an object without undefined values, so that zod defaults apply and specs serialize stably. */
export function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/**
 * Keeps the props a construct knows and reports every other key as an unknown property, listing the construct's
 * real props. The strict schemas alone cannot do this: constructs fill some spec keys themselves (path, name, kind,
 * children), so a prop with such a name (`path: '/api'`) would be silently overwritten, and the schema's key list
 * names keys a user cannot set.
 */
export function knownProps<T extends object>(props: T | undefined, known: readonly string[], path: string): { props: T; issues: SpecIssue[] } {
  const kept: Record<string, unknown> = {};
  const issues: SpecIssue[] = [];
  for (const [key, value] of Object.entries(props ?? {})) {
    if (known.includes(key)) kept[key] = value;
    else issues.push({ path, field: key, value, message: unknownKeyMessage(key, known) });
  }
  return { props: kept as T, issues };
}
