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

/** The value of a triggers attribute that Terraform reads from `relativePath` (from the stack folder), literally. */
export function triggersFileExpression(relativePath: string): string {
  return `\${jsondecode(file("\${path.module}/${relativePath}"))}`;
}

const TRIGGERS_FILE_EXPRESSION = /^\$\{jsondecode\(file\("\$\{path\.module\}\/([A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*)"\)\)\}$/;

/** The file a triggers attribute written by triggersFileExpression reads, or null for anything else (or a path with `..`). */
export function triggersFileOf(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const file = TRIGGERS_FILE_EXPRESSION.exec(value)?.[1];
  return file === undefined || file.split('/').some((part) => part === '..' || part === '.') ? null : file;
}
