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
