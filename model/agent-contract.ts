/**
 * What the synthesized provisioners and the agent agree on. The constructs write it into the Terraform JSON and the
 * agent reads it back, so both take it from here.
 */

/** The spec travels gzipped and base64-encoded in numbered environment variables: `<prefix>0`, `<prefix>1`, … */
export const SPEC_ENV_PREFIX = 'TULA_DSR_SPEC_GZ_';

/** Characters per variable: Linux caps one environment variable (name=value) at 128 KiB. */
export const SPEC_ENV_CHUNK = 65536;

/**
 * The largest spec the agent decompresses: a balancer with 10,000 VIPs of three backends is about 10 MB, and a
 * few kilobytes of gzip could otherwise expand to gigabytes in the agent (or the daemon every provisioner shares).
 */
export const SPEC_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The trigger that shows a plan the spec as synth knows it when the spec holds tokens (the spec itself is then a
 * local the plan cannot show), each token written by `pendingValue`.
 */
export const SPEC_REVIEW_KEY = 'spec_review';

/** How the review trigger writes a value Terraform knows only after apply: the expression it comes from. */
export const pendingValue = (expression: string): string => `(known after apply: ${expression})`;

/** The expressions `pendingValue` wrote into a text (JSON-escaped quotes inside them are unescaped). */
export function pendingExpressions(text: string): string[] {
  return [...text.matchAll(/\(known after apply: ((?:[^"\\]|\\.)*?)\)"/g)].map((m) => m[1].replace(/\\(.)/g, '$1'));
}
