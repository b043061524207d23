/**
 * Validation problems are data first (where, which field, what value, why) and text second, so that
 * constructs can prefix their construct path and the agent can print or emit them as JSON.
 */
export interface SpecIssue {
  /** Construct path of the object at fault, e.g. `stack/lb1/web/web1`. */
  readonly path: string;
  /** The property at fault, e.g. `weight` or `ssh.port`. */
  readonly field: string;
  /** The offending value, when there is one. */
  readonly value?: unknown;
  /** What is wrong and what is allowed. */
  readonly message: string;
}

export function formatIssue(issue: SpecIssue): string {
  return `${issue.path}: ${issue.field}: ${issue.message}`;
}

export function formatIssues(issues: readonly SpecIssue[]): string {
  const noun = issues.length === 1 ? 'problem' : 'problems';
  return [`tula-dsr found ${issues.length} ${noun} in the configuration:`, ...issues.map((i) => `  - ${formatIssue(i)}`)].join('\n');
}

/**
 * Thrown for user mistakes; the CLI and constructs print the issues without a stack trace. The construct paths in
 * the message locate the mistake, so the error carries no stack frames (they would only show where it was noticed)
 * and keeps its issues out of what Node prints for an error nobody caught.
 */
export class SpecError extends Error {
  declare readonly issues: readonly SpecIssue[];
  constructor(issues: readonly SpecIssue[]) {
    super(formatIssues(issues));
    this.name = 'SpecError';
    Object.defineProperty(this, 'issues', { value: issues, enumerable: false });
    this.stack = `${this.name}: ${this.message}`;
  }
}

/**
 * A construct path used in messages and written into comments of config files and nft rulesets: one non-empty line
 * without control characters (a line break there would start a new sysctl line or nft command).
 */
export function isSingleLinePrintable(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && !/\p{Cc}/u.test(value);
}

/** Quotes a user value for a message: strings in double quotes, everything else as JSON. */
export function showValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  try {
    const text = JSON.stringify(value);
    return text && text.length <= 80 ? text : `a ${typeof value}`;
  } catch {
    return `a ${typeof value}`;
  }
}
