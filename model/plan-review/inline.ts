/**
 * Inline text of the review: plain strings, code spans and strong text. The review is built once from these and
 * rendered as Markdown (escaped for GitHub) or as plain text for terminals.
 */
export type InlinePart = string | { readonly code: string } | { readonly strong: string };
export type Inline = readonly InlinePart[];

export const code = (text: string): InlinePart => ({ code: text });
export const strong = (text: string): InlinePart => ({ strong: text });

/** `a`, `b` and `c`: code spans joined for a sentence. */
export function codeList(items: readonly string[]): Inline {
  return items.flatMap((item, i) => [...(i === 0 ? [] : [i === items.length - 1 ? ' and ' : ', ']), code(item)]);
}

/** Parts joined by a separator. */
export function joinInline(parts: readonly Inline[], separator: string): Inline {
  return parts.flatMap((p, i) => (i === 0 ? [...p] : [separator, ...p]));
}

/** A value as a review shows it: strings bare, other values as JSON, an unset field as `(unset)`. */
export function showField(value: unknown): string {
  if (value === undefined) return '(unset)';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The plain text of inline parts, for measuring and for the text format. */
export function plainText(inline: Inline): string {
  return inline.map((p) => (typeof p === 'string' ? p : 'code' in p ? p.code : p.strong)).join('');
}

/** English plural: `1 VIP`, `2 VIPs`. */
export function count(n: number, noun: string, plural = `${noun}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? noun : plural}`;
}
