import { App, TerraformStack } from 'cdktf';
import { Construct } from 'constructs';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { TRIGGER_FILES_DIR, escapeTemplates, sha256Hex, stableJson, triggersFileExpression } from '../model';
import { SpecIssue } from '../model/issues';

/**
 * Context key: the largest trigger map (in bytes of UTF-8 text) a host resource writes into cdk.tf.json itself; a
 * larger one is written to files beside it that Terraform reads with `file()`. Terraform parses each string of its
 * JSON configuration as a template, which costs it several times what reading the same text from a file does: one
 * weight change of a 10,000-VIP balancer planned in 41 s inline and in 5.6 s from files (BENCHMARKS.md, "Issue 17l").
 * @default 65536
 */
export const TRIGGERS_INLINE_MAX_BYTES_CONTEXT_KEY = 'tula-dsr:triggers-inline-max-bytes';
export const DEFAULT_TRIGGERS_INLINE_MAX_BYTES = 65536;

/** The inline limit the context sets; an invalid value is an issue of the stack, and the default applies until then. */
export function triggersInlineMaxBytes(scope: Construct): { bytes: number; issue?: SpecIssue } {
  const value = scope.node.tryGetContext(TRIGGERS_INLINE_MAX_BYTES_CONTEXT_KEY) ?? DEFAULT_TRIGGERS_INLINE_MAX_BYTES;
  if (Number.isSafeInteger(value) && value >= 0) return { bytes: value };
  return {
    bytes: DEFAULT_TRIGGERS_INLINE_MAX_BYTES,
    issue: {
      path: scope.node.path,
      field: `context ${TRIGGERS_INLINE_MAX_BYTES_CONTEXT_KEY}`,
      value,
      message: `${JSON.stringify(value)} is not a number of bytes; use a whole number ≥ 0 (default ${DEFAULT_TRIGGERS_INLINE_MAX_BYTES})`,
    },
  };
}

/** The folder cdktf writes this stack to (`<outdir>/stacks/<stack id>`), where Terraform runs. */
export function stackDirOf(scope: Construct): string {
  return path.resolve(App.of(scope).outdir, 'stacks', TerraformStack.of(scope).node.id);
}

/**
 * A host resource's triggers as its attribute: the map itself, each value escaped so that Terraform reads it
 * literally, while the text stays within `maxBytes`; else an expression that reads the map from
 * `tula-dsr-triggers/<resource>/<sha256 prefix>.json` and the spec from `<same prefix>.spec.json` beside it
 * (content-addressed, so a changed map changes cdk.tf.json too). Called in cdktf's final pass only (the one whose
 * output is kept); the files replace the resource's earlier ones.
 */
export function triggersAttribute(
  scope: Construct,
  resourceId: string,
  triggers: Record<string, string> & { readonly spec: string },
  options: { readonly maxBytes: number },
): Record<string, string> | string {
  let bytes = 0;
  for (const key in triggers) bytes += Buffer.byteLength(triggers[key]);
  if (bytes <= options.maxBytes) return escapeTemplates(triggers);
  const { spec, ...rest } = triggers;
  const map = stableJson(rest, 0);
  const name = sha256Hex(`${map}\n${spec}`).slice(0, 16);
  const files = { triggers: `${name}.json`, spec: `${name}.spec.json` };
  const folder = path.join(stackDirOf(scope), TRIGGER_FILES_DIR, resourceId);
  mkdirSync(folder, { recursive: true });
  for (const old of readdirSync(folder)) if (old !== files.triggers && old !== files.spec) rmSync(path.join(folder, old), { force: true });
  writeFileSync(path.join(folder, files.triggers), map);
  writeFileSync(path.join(folder, files.spec), spec);
  const relative = (file: string) => path.posix.join(TRIGGER_FILES_DIR, resourceId, file);
  return triggersFileExpression({ triggers: relative(files.triggers), spec: relative(files.spec) });
}
