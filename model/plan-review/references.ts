/** A Terraform reference such as `terraform_data.backend_ip.output`, `var.ip`, `module.vm.ip` or `aws_instance.vm[0].private_ip`. */
const REFERENCE = /(?<![\w.-])((?:data\.)?[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[(?:\d+|"[^"]*")\])+)/g;
const NOT_REFERENCES = new Set(['self', 'path', 'terraform', 'count', 'each']);

/** The quoted strings of an HCL expression, with their escapes (the value parts, which hold no references). */
const HCL_STRING = /"(?:[^"\\]|\\.)*"/g;

/**
 * The Terraform references in an expression as Terraform prints it in a plan's configuration: either interpolations
 * inside a string (`"…${terraform_data.x.output}…"`) or a whole expression (`${jsonencode({ ip = var.ip })}`), so
 * that a review can name what a value waits for. Quoted strings inside an expression are values, not references.
 */
export function terraformReferences(text: string): string[] {
  const found = new Set<string>();
  for (const interpolation of interpolations(text)) {
    for (const match of interpolation.replace(HCL_STRING, '""').matchAll(REFERENCE)) {
      const reference = match[1];
      if (!NOT_REFERENCES.has(reference.split(/[.[]/)[0])) found.add(reference);
    }
  }
  return [...found].sort();
}

/** The contents of each top-level `${…}`, matching nested braces; `$${` is an escaped dollar, not an interpolation. */
function interpolations(text: string): string[] {
  const out: string[] = [];
  for (let i = text.indexOf('${'); i >= 0; i = text.indexOf('${', i + 2)) {
    if (text[i - 1] === '$') continue;
    let depth = 1;
    let j = i + 2;
    for (; j < text.length && depth > 0; j++) {
      if (text[j] === '{') depth++;
      else if (text[j] === '}') depth--;
    }
    out.push(...nested(text.slice(i + 2, j - 1)));
    i = j - 2;
  }
  return out;
}

/** An interpolation and the ones inside its quoted strings (cdktf writes `${sha256("…${x.y.z}…")}`). */
function nested(inner: string): string[] {
  const strings = [...inner.matchAll(HCL_STRING)].map((m) => m[0]);
  return [inner, ...strings.flatMap((s) => interpolations(s.replace(/\\"/g, '"')))];
}
