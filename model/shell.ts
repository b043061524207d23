/**
 * POSIX shell quoting, the one place for it: the agent's scripts and the boot scripts the model renders. Every
 * value that reaches a shell on a host (names, paths, addresses, file contents) is an argv element rendered here,
 * once; the fixed shell text around them holds no values.
 */

/**
 * Words that never need quoting in a POSIX shell. `=` is left out on purpose: `A=b` as the first word of a
 * command would be an assignment, not a command name.
 */
const SAFE_WORD = /^[A-Za-z0-9_@%+:,./-]+$/;

/**
 * Quotes one argument for a POSIX shell (sh, dash, bash, busybox ash): single quotes, with each embedded `'`
 * written as `'\''`. Words made only of safe characters are returned as they are. NUL cannot be passed in an
 * argument and is rejected.
 */
export function shellQuote(arg: string): string {
  if (arg.includes('\0')) {
    throw new Error(`cannot quote an argument containing a NUL byte: ${JSON.stringify(arg)}`);
  }
  if (SAFE_WORD.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Renders an argv array as one shell command line, quoting every argument once. */
export function renderCommand(argv: readonly string[]): string {
  if (argv.length === 0) throw new Error('cannot render an empty command');
  return argv.map(shellQuote).join(' ');
}
