/**
 * Wraps a script so that the remote shell parses it completely before anything runs, and feeds it `stdin` if
 * given: a truncated transfer is then a syntax error (no closing brace), so a half-received script never runs.
 */
export function wrapScript(script: string, stdin?: string | Buffer): string {
  const body = script.endsWith('\n') ? script : `${script}\n`;
  if (stdin === undefined) {
    return `{\n${body}} </dev/null\n`;
  }
  const data = Buffer.from(stdin)
    .toString('base64')
    .replace(/.{1,76}/g, '$&\n');
  return `tula_dsr_stdin() {\nbase64 -d <<'TULA_DSR_STDIN'\n${data}TULA_DSR_STDIN\n}\ntula_dsr_stdin | {\n${body}}\n`;
}
