import { Token } from 'cdktf';
import { IConstruct } from 'constructs';
import { createSpecSchemas, SpecIssue, checkSpec } from '../model';
import type { z } from 'zod';

/** Schemas that accept Terraform tokens; the agent validates those values with the strict twin at apply time. */
export const SynthSchemas = createSpecSchemas((v) => Token.isUnresolved(v));
export const isUnresolved = (v: unknown): boolean => Token.isUnresolved(v);

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
    validate: () => issues().filter((i) => i.path === construct.node.path).map((i) => `${i.field}: ${i.message}`),
  });
}

/** Copies an object without undefined values, so that zod defaults apply and specs serialize stably. */
export function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
