/**
 * Terraform reads every string of its JSON configuration as a template: `${…}` interpolates and `%{…}` is a directive.
 * Text tula-dsr puts there (a spec, a ruleset for review) must come back to the agent unchanged, whatever it holds.
 */

/** Text that Terraform reads back as exactly `text`: `${` and `%{` are written `$${` and `%%{`. */
export function escapeTemplate(text: string): string {
  // replacer functions: in a replacement string, `$$` would stand for one `$`
  return text.replace(/\$\{/g, () => '$${').replace(/%\{/g, () => '%%{');
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
