import { z } from 'zod';
import { SpecIssue, isSingleLinePrintable } from './issues';
import { unknownKeyMessage } from './fields';
import { fastParse } from './fast-parse';

type Segment = PropertyKey;

function childAt(value: unknown, segment: Segment): unknown {
  return value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[segment] : undefined;
}

type Def = Record<string, unknown>;
const defOf = (schema: unknown): Def | undefined => (schema as { _zod?: { def?: Def } } | undefined)?._zod?.def;

/**
 * Walks the schema along `segments` beside the input, through optional/default/nullable wrappers, arrays and
 * discriminated unions (the option the input's discriminator selects), to the object schema there; its keys, or [].
 */
function objectKeysAt(schema: z.ZodType, segments: readonly Segment[], input: unknown): string[] {
  let current: unknown = schema;
  let value = input;
  const unwrap = () => {
    for (;;) {
      const def = defOf(current);
      if (def && (def.type === 'optional' || def.type === 'default' || def.type === 'nullable') && def.innerType) {
        current = def.innerType;
      } else if (def?.type === 'union' && typeof def.discriminator === 'string') {
        const selector = childAt(value, def.discriminator);
        const values = (option: unknown) => defOf((defOf(option)?.shape as Def | undefined)?.[def.discriminator as string])?.values as unknown[] | undefined;
        current = (def.options as unknown[]).find((option) => values(option)?.includes(selector));
      } else return;
    }
  };
  for (const segment of segments) {
    unwrap();
    const def = defOf(current);
    if (def?.type === 'array') current = def.element;
    else if (def?.type === 'object') current = (def.shape as Def)[segment as string];
    else return [];
    value = childAt(value, segment);
  }
  unwrap();
  const def = defOf(current);
  return def?.type === 'object' ? Object.keys(def.shape as object) : [];
}

/**
 * Maps zod's issues to ours: the object at fault is the nearest enclosing object that carries a construct `path`
 * (every spec object's schema declares one), and the field is what remains of zod's path below it.
 */
export function toSpecIssues(error: z.ZodError, input: unknown, schema: z.ZodType, fallbackPath: string): SpecIssue[] {
  const issues: SpecIssue[] = [];
  for (const issue of error.issues) {
    let objectPath = fallbackPath;
    let fieldStart = 0;
    let cursor: unknown = input;
    // A path is only used to locate a problem when it is a clean single line (a bad path is itself the problem).
    const own = childAt(cursor, 'path');
    if (isSingleLinePrintable(own)) objectPath = own;
    issue.path.forEach((segment, index) => {
      cursor = childAt(cursor, segment);
      // Only spec objects carry a construct path; another object's `path` (an HTTP check's) is just a field.
      const p =
        isSingleLinePrintable(childAt(cursor, 'path')) && objectKeysAt(schema, issue.path.slice(0, index + 1), input).includes('path')
          ? childAt(cursor, 'path')
          : undefined;
      if (isSingleLinePrintable(p) && index < issue.path.length - 1) {
        objectPath = p;
        fieldStart = index + 1;
      } else if (isSingleLinePrintable(p) && issue.code === 'unrecognized_keys') {
        objectPath = p;
        fieldStart = index + 1;
      }
    });
    const fieldOf = (extra: Segment[]) =>
      [...issue.path.slice(fieldStart), ...extra]
        .map((s) => (typeof s === 'number' ? `[${s}]` : String(s)))
        .join('.')
        .replace(/\.\[/g, '[') || '(root)';
    if (issue.code === 'unrecognized_keys') {
      const known = objectKeysAt(schema, issue.path, input).filter((k) => k !== 'path' && k !== 'kind');
      for (const key of issue.keys) {
        issues.push({ path: objectPath, field: fieldOf([key]), value: childAt(cursor, key), message: unknownKeyMessage(key, known) });
      }
    } else {
      const message = issue.code === 'invalid_type' && cursor === undefined ? 'is required' : issue.message;
      issues.push({ path: objectPath, field: fieldOf([]), value: cursor, message });
    }
  }
  return issues;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; issues: SpecIssue[] };

/** Parses with zod and then runs the cross-object checks, collecting every problem before failing. */
export function checkSpec<S extends z.ZodType>(
  schema: S,
  input: unknown,
  fallbackPath: string,
  crossCheck: (value: z.infer<S>) => SpecIssue[] = () => [],
): Checked<z.infer<S>> {
  // a valid spec (nearly every run) takes the fast path; zod runs only to find and word the problems
  const fast = fastParse(schema, input);
  const parsed = fast ? { success: true as const, data: fast.value } : schema.safeParse(input);
  if (!parsed.success) return { ok: false, issues: toSpecIssues(parsed.error, input, schema, fallbackPath) };
  const issues = crossCheck(parsed.data);
  return issues.length ? { ok: false, issues } : { ok: true, value: parsed.data };
}
