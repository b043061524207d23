import { SpecError, formatIssues } from '../model/issues';

/**
 * Prints a user mistake without a stack trace: our SpecErrors (from their issues, whatever cdktf did to the message
 * on the way) and cdktf's aggregated validation failures are already complete messages. Anything else is a bug and
 * keeps its stack.
 */
export function explainAndExit(error: unknown): never {
  if (error instanceof SpecError) {
    process.stderr.write(`${formatIssues(error.issues)}\n`);
  } else if (error instanceof Error && error.message.startsWith('Validation failed with the following errors')) {
    process.stderr.write(`${error.message.replace(/\n\nIf you wish to ignore these validations[\s\S]*$/, '')}\n`);
  } else {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  }
  process.exit(1);
}
