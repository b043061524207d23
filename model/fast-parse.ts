/**
 * A fast path for zod's parse of a valid spec. zod builds a payload object and an issues array for every field and
 * runs each custom check through its check machinery: for a 10,000-VIP balancer spec (450,000 fields) that was about
 * a quarter of a second per run and much of the garbage. This walks the same schema tree (its definitions, read once)
 * and calls the same field checks, but builds only the output. It answers only "zod accepts this, and outputs that";
 * on anything it does not accept, or a schema node it does not model, the caller runs zod itself, which then finds and
 * words every problem exactly as before. So it can only ever be slower to reject, never more or less strict.
 *
 * Modelled: strict and plain objects, arrays, custom (z.custom) fields, plain strings, numbers and booleans,
 * optional, nullable, default, literal, discriminated unions and the `overwrite` check; any other node (a pipe or transform, a refinement, a number with checks) is parsed
 * by zod itself, on its own, as an island inside the fast walk. Output is built as zod builds it: object keys in
 * shape order, defaults filled, absent optional keys left out.
 */
import type { z } from 'zod';

interface ZodInternals {
  readonly def: Def;
  readonly traits?: ReadonlySet<string>;
  readonly optin?: 'optional' | 'defaulted';
  readonly optout?: 'optional';
  readonly propValues?: Record<string, Set<unknown>>;
}
interface Schema {
  readonly _zod: ZodInternals;
  safeParse(value: unknown): { success: boolean; data?: unknown };
}
interface Def {
  readonly type: string;
  readonly coerce?: boolean;
  readonly format?: string;
  readonly checks?: readonly { readonly _zod: { readonly def: { readonly check?: string; readonly when?: unknown; readonly tx?: (v: unknown) => unknown } } }[];
  readonly shape?: Record<string, Schema>;
  readonly catchall?: Schema;
  readonly element?: Schema;
  readonly innerType?: Schema;
  readonly defaultValue?: unknown;
  readonly values?: readonly unknown[];
  readonly fn?: (value: unknown) => unknown;
  readonly options?: readonly Schema[];
  readonly discriminator?: string;
  readonly unionFallback?: boolean;
}

/** What a parser returns for a value zod would not accept as it stands (zod then runs and reports). */
const FAIL: unique symbol = Symbol('not accepted by the fast path');
type Parser = (value: unknown) => unknown;

const parsers = new WeakMap<object, Parser>();

/** zod's parse of `input` with `schema` when it succeeds, or undefined: then run zod for the problems. */
export function fastParse<S extends z.ZodType>(schema: S, input: unknown): { value: z.infer<S> } | undefined {
  const output = parserOf(schema as unknown as Schema)(input);
  return output === FAIL ? undefined : { value: output as z.infer<S> };
}

function parserOf(schema: Schema): Parser {
  let parser = parsers.get(schema);
  if (!parser) {
    // a placeholder first: a schema that (through a getter) contains itself parses through zod
    parsers.set(schema, island(schema));
    parser = build(schema);
    parsers.set(schema, parser);
  }
  return parser;
}

/** zod on this node alone: for what the fast walk does not model. */
function island(schema: Schema): Parser {
  return (value) => {
    const result = schema.safeParse(value);
    return result.success ? result.data : FAIL;
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function build(schema: Schema): Parser {
  const def = schema._zod.def;
  const checks = def.checks ?? [];
  // a string format (z.email(), …) or an integer (z.int()) is a check itself; a coercing schema converts its input
  const plain = !checks.length && !def.coerce && !def.format && !schema._zod.traits?.has('$ZodCheck');
  switch (def.type) {
    case 'string':
      return plain ? (value) => (typeof value === 'string' ? value : FAIL) : island(schema);
    case 'number':
      return plain ? (value) => (typeof value === 'number' && Number.isFinite(value) ? value : FAIL) : island(schema);
    case 'boolean':
      return plain ? (value) => (typeof value === 'boolean' ? value : FAIL) : island(schema);
    case 'nullable': {
      const inner = def.innerType;
      if (checks.length || !inner) return island(schema);
      const parse = parserOf(inner);
      return (value) => (value === null ? null : parse(value));
    }
    case 'custom': {
      const fn = def.fn;
      if (checks.length || !fn) return island(schema);
      return (value) => {
        const ok = fn(value);
        return ok && !(ok instanceof Promise) ? value : FAIL;
      };
    }
    case 'literal': {
      if (checks.length || !def.values) return island(schema);
      const values = new Set(def.values);
      return (value) => (values.has(value) ? value : FAIL);
    }
    case 'optional': {
      const inner = def.innerType;
      if (checks.length || !inner || inner._zod.optin === 'defaulted') return island(schema);
      const parse = parserOf(inner);
      return (value) => (value === undefined ? undefined : parse(value));
    }
    case 'default': {
      const inner = def.innerType;
      if (checks.length || !inner) return island(schema);
      const parse = parserOf(inner);
      return (value) => {
        if (value === undefined) return def.defaultValue;
        const output = parse(value);
        return output === undefined ? def.defaultValue : output;
      };
    }
    case 'array': {
      const element = def.element;
      if (checks.length || !element) return island(schema);
      const parse = parserOf(element);
      return (value) => {
        if (!Array.isArray(value)) return FAIL;
        const output = Array(value.length);
        for (let i = 0; i < value.length; i++) {
          const item = parse(value[i]);
          if (item === FAIL) return FAIL;
          output[i] = item;
        }
        return output;
      };
    }
    case 'object':
      return objectParser(schema, def, checks);
    case 'union':
      return unionParser(schema, def, checks);
    default:
      return island(schema);
  }
}

function objectParser(schema: Schema, def: Def, checks: NonNullable<Def['checks']>): Parser {
  const catchall = def.catchall;
  const strict = catchall?._zod.def.type === 'never';
  // only the overwrite check (withStatsDefaults), unconditional
  const overwrites = checks.map((c) => (c._zod.def.check === 'overwrite' && !c._zod.def.when ? c._zod.def.tx : undefined));
  if ((catchall && !strict) || !def.shape || overwrites.some((tx) => tx === undefined)) return island(schema);
  const shape = def.shape;
  const keys = Object.keys(shape).filter((key) => key !== '__proto__');
  if (Object.getOwnPropertySymbols(shape).length) return island(schema);
  const known = new Set(Object.keys(shape));
  const fields = keys.map((key) => {
    const field = shape[key];
    return { key, parse: parserOf(field), optin: field._zod.optin, optionalOut: field._zod.optout === 'optional' };
  });
  let walk: FieldWalk;
  try {
    walk = compileFields(fields, strict ? [...known] : null);
  } catch {
    // code generation turned off (node --disallow-code-generation-from-strings): zod itself, slower and as exact
    return island(schema);
  }
  return (value) => {
    if (!isObject(value)) return FAIL;
    let output = walk(value);
    if (output === FAIL) return FAIL;
    for (const tx of overwrites) output = tx!(output) as Record<string, unknown>;
    return output;
  };
}

interface Field {
  readonly key: string;
  readonly parse: Parser;
  readonly optin?: 'optional' | 'defaulted';
  readonly optionalOut: boolean;
}

type FieldWalk = (value: Record<string, unknown>) => Record<string, unknown> | typeof FAIL;

/**
 * The fields of one object schema as straight-line code, one block per field with its options decided here (as
 * zod's handlePropertyResult decides, for a result without issues). Generated because a loop over the fields reads
 * `value[key]` with a different key each time, which V8 serves from its slowest, megamorphic path: on a 10,000-VIP
 * spec (50,000 objects) that loop was most of the fast path's time. Keys reach the code only as JSON string literals.
 *
 * `known`: a strict object's keys (its shape's, as zod's), checked with a `switch` of literals for the same reason.
 */
function compileFields(fields: readonly Field[], known: readonly string[] | null): FieldWalk {
  const lines = ['let output = {};', 'let present;', 'let result;'];
  fields.forEach(({ key, optin, optionalOut }, i) => {
    const k = JSON.stringify(key);
    lines.push(`present = ${k} in value;`);
    const skipAbsent = optionalOut && optin === 'optional';
    lines.push(`${skipAbsent ? 'if (present) ' : ''}{`);
    lines.push(`result = parse[${i}](value[${k}]);`);
    const failAbsentOk = optin !== undefined && optionalOut;
    lines.push(`if (result === FAIL) { ${failAbsentOk ? 'if (!present) {} else ' : ''}return FAIL; }`);
    lines.push('else {');
    if (optin === undefined) lines.push('if (!present) return FAIL;');
    const keepUndefined = optin === 'defaulted' && !optionalOut;
    lines.push(`if (result === undefined) { if (${keepUndefined ? 'true' : 'present'}) output[${k}] = undefined; } else output[${k}] = result;`);
    lines.push('}', '}');
  });
  if (known) {
    const cases = known.filter((key) => key !== '__proto__').map((key) => `case ${JSON.stringify(key)}: break;`);
    lines.push(`for (const key in value) switch (key) { ${cases.join(' ')} default: return FAIL; }`);
  }
  lines.push('return output;');
  const body = new Function('FAIL', 'parse', `return function walk(value) {\n${lines.join('\n')}\n};`) as (fail: typeof FAIL, parse: Parser[]) => FieldWalk;
  return body(
    FAIL,
    fields.map((f) => f.parse),
  );
}

function unionParser(schema: Schema, def: Def, checks: NonNullable<Def['checks']>): Parser {
  const discriminator = def.discriminator;
  if (checks.length || typeof discriminator !== 'string' || def.unionFallback || !def.options) return island(schema);
  // as zod's discriminatorMap: each option's literal values of the discriminator; a value two options share picks none
  const options = new Map<unknown, Parser | null>();
  for (const option of def.options) {
    const values = option._zod.propValues?.[discriminator];
    if (!values || values.size === 0) return island(schema);
    for (const v of values) options.set(v, options.has(v) ? null : parserOf(option));
  }
  return (value) => {
    if (!isObject(value)) return FAIL;
    const parse = options.get(value[discriminator]);
    return parse ? parse(value) : FAIL;
  };
}
