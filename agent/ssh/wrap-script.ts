/**
 * Wraps a script so that the remote shell parses it completely before anything runs, and feeds it `stdin` if
 * given: a truncated transfer is then a syntax error (no closing brace), so a half-received script never runs.
 * Every script runs in the C locale (tools' messages and sort orders are what the parsers expect).
 */
export function wrapScript(script: string, stdin?: string | Buffer): string {
  const body = `LC_ALL=C; export LC_ALL\n${script}${script.endsWith('\n') ? '' : '\n'}`;
  if (stdin === undefined) {
    return `{\n${body}} </dev/null\n`;
  }
  const data = Buffer.from(stdin)
    .toString('base64')
    .replace(/.{1,76}/g, '$&\n');
  return `tula_dsr_stdin() {\nbase64 -d <<'TULA_DSR_STDIN'\n${data}TULA_DSR_STDIN\n}\ntula_dsr_stdin | {\n${body}}\n`;
}
