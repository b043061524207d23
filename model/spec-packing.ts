import { gunzipSync } from 'node:zlib';
import { SPEC_MAX_BYTES } from './agent-contract';

/**
 * How Terraform stores a large host's spec in its state: gzipped and base64-encoded (see triggersFileExpression). A
 * gzip stream begins with the bytes 1f 8b 08, which base64 writes as this; a spec stored as JSON begins with `{`.
 */
export const COMPRESSED_SPEC_PREFIX = 'H4sI';

/** The text of base64-encoded gzip, at most SPEC_MAX_BYTES once decompressed; a problem in words otherwise. */
export function gunzipBase64(packed: string): { readonly text: string } | { readonly problem: string } {
  try {
    return { text: gunzipSync(Buffer.from(packed, 'base64'), { maxOutputLength: SPEC_MAX_BYTES }).toString('utf8') };
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE'
      ? { problem: `is larger than ${SPEC_MAX_BYTES / 1048576} MiB once decompressed, more than any balancer needs; it was not read` }
      : { problem: `cannot be decompressed: ${(error as Error).message}` };
  }
}

/** The spec's JSON text from a `spec` trigger as Terraform stores it: JSON, or compressed (COMPRESSED_SPEC_PREFIX). */
export function specTextOfTrigger(trigger: string): { readonly text: string } | { readonly problem: string } {
  return trigger.startsWith(COMPRESSED_SPEC_PREFIX) ? gunzipBase64(trigger) : { text: trigger };
}
