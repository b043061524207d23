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

/*
 * Shell fragments for the agent's scripts. On a host, each process start costs about 5 ms (more on a busy one), and
 * an apply or facts script starts dozens: these do their work with shell builtins where they can.
 */

/** `mkdir -p DIR`, started only when DIR is missing (`test` is a builtin). `umask`: the mode new folders get. */
export function ensureDirCommand(dir: string, umask?: string): string {
  const mkdir = renderCommand(['mkdir', '-p', dir]);
  return `{ [ -d ${shellQuote(dir)} ] || ${umask ? `(umask ${umask} && ${mkdir})` : mkdir}; }`;
}

/** `rm -f PATHS`, started only when one of them is there (a file, or a link, even a dangling one). */
export function removeFilesCommand(paths: readonly string[]): string {
  if (!paths.length) return ':';
  const there = paths.map((p) => `[ -e ${shellQuote(p)} ] || [ -h ${shellQuote(p)} ]`).join(' || ');
  return `if ${there}; then ${renderCommand(['rm', '-f', ...paths])}; fi`;
}

/**
 * Sets shell variable `name` to the sha256 (64 hex digits) of `file`, or to the empty string when it cannot be read;
 * the status is sha256sum's. Without `cut`: the shell drops sha256sum's ` -` itself.
 */
export function sha256AssignCommand(name: string, file: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a shell variable name: ${name}`);
  return `${name}=$(sha256sum 2>/dev/null < ${shellQuote(file)}) && ${name}=\${${name}%% *}`;
}

/** Sets shell variable `name` to the first line of `file`, or to the empty string when it cannot be read (no `cat`). */
export function readLineCommand(name: string, file: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a shell variable name: ${name}`);
  return `${name}=; if [ -r ${shellQuote(file)} ]; then read -r ${name} < ${shellQuote(file)}; fi`;
}

/** Ends a pipeline with the sha256 of its output (64 hex digits and a newline): `… | ${SHA256_OF_STDIN}`. */
export const SHA256_OF_STDIN = 'sha256sum | { read -r h _ && echo "$h"; }';
