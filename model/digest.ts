import { createHash } from 'node:crypto';

/**
 * JSON with object keys in sorted order and two-space indentation (or none, on one line, with `indent` 0):
 * byte-identical for equal input, line-diffable.
 */
export function stableJson(value: unknown, indent = 2): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(sort(value), null, indent || undefined);
}

/** Texts at least this long keep their hash for the next caller (see sha256Hex). */
const MEMO_MIN_LENGTH = 64 * 1024;
const MEMO_SIZE = 8;
const memo = new Map<string, string>();

/**
 * The generation of a host's configuration: Terraform's `sha256()` of the spec text gives the same value. A run on
 * 10,000 VIPs hashes each megabyte-sized text (ruleset, boot script, state) three or four times, in as many places;
 * the last few large texts keep their hash (a Map finds a string by V8's own, cheaper hash of it).
 */
export function sha256Hex(text: string): string {
  if (text.length < MEMO_MIN_LENGTH) return createHash('sha256').update(text, 'utf8').digest('hex');
  let hash = memo.get(text);
  if (hash === undefined) {
    hash = createHash('sha256').update(text, 'utf8').digest('hex');
    if (memo.size >= MEMO_SIZE) memo.delete(memo.keys().next().value as string);
    memo.set(text, hash);
  }
  return hash;
}
