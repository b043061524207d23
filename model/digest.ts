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

/** The generation of a host's configuration: Terraform's `sha256()` of the spec text gives the same value. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
