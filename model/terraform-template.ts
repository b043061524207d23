/**
 * Terraform reads every string of its JSON configuration as a template: `${…}` interpolates and `%{…}` is a directive.
 * Text tula-dsr puts there (a spec, a ruleset for review) must come back to the agent unchanged, whatever it holds.
 */

/** Text that Terraform reads back as exactly `text`: `${` and `%{` are written `$${` and `%%{`. */
export function escapeTemplate(text: string): string {
  // replacer functions: in a replacement string, `$$` would stand for one `$`
  return text.replace(/\$\{/g, () => '$${').replace(/%\{/g, () => '%%{');
}

/** Each text of a map escaped as escapeTemplate does. */
export function escapeTemplates(texts: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(texts).map(([key, text]) => [key, escapeTemplate(text)]));
}

/**
 * What Terraform makes of a template that holds no interpolation or directive, or null when it holds one (then
 * only Terraform can tell its value). Terraform reads left to right: `$${` is `${`, `%%{` is `%{`.
 */
export function literalOfTemplate(template: string): string | null {
  let literal = true;
  // the regex scans left to right too, trying the escapes first at each position
  const text = template.replace(/\$\$\{|%%\{|\$\{|%\{/g, (match) => {
    if (match.length === 2) literal = false;
    return match.slice(1);
  });
  return literal ? text : null;
}

/**
 * Where a stack keeps the trigger maps it does not inline, relative to its folder (one folder per resource). Terraform
 * parses every string of a JSON configuration as a template, which costs it far more than reading the same text with
 * `file()` (docs/decisions.md, "Large triggers are files Terraform reads").
 */
export const TRIGGER_FILES_DIR = 'tula-dsr-triggers';

/** The files a host resource's triggers are read from, relative to the stack folder: the map without `spec`, and the spec's JSON. */
export interface TriggerFiles {
  readonly triggers: string;
  readonly spec: string;
}

/**
 * The value of a triggers attribute that Terraform reads from files: the map literally, and `spec` gzipped and
 * base64-encoded (COMPRESSED_SPEC_PREFIX). Terraform's time for a stack follows the bytes of its state, and a large
 * balancer's spec JSON shrinks about seventeen times (docs/decisions.md, "A large spec is stored compressed").
 * Terraform's own gzip compresses, so every machine stores the same text; the spec has a file of its own so that
 * Terraform never decodes it as JSON.
 */
export function triggersFileExpression(files: TriggerFiles): string {
  return `\${merge(jsondecode(file("\${path.module}/${files.triggers}")), { spec = base64gzip(file("\${path.module}/${files.spec}")) })}`;
}

const FILE = /file\("\$\{path\.module\}\/([A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*)"\)/.source;
const TRIGGERS_FILE_EXPRESSION = new RegExp(`^\\$\\{merge\\(jsondecode\\(${FILE}\\), \\{ spec = base64gzip\\(${FILE}\\) \\}\\)\\}$`);

const isPlainPath = (file: string) => !file.split('/').some((part) => part === '..' || part === '.');

/** The files a triggers attribute written by triggersFileExpression reads, or null for anything else (or a path with `..`). */
export function triggersFileOf(value: unknown): TriggerFiles | null {
  if (typeof value !== 'string') return null;
  const [, triggers, spec] = TRIGGERS_FILE_EXPRESSION.exec(value) ?? [];
  return triggers !== undefined && isPlainPath(triggers) && isPlainPath(spec) ? { triggers, spec } : null;
}
