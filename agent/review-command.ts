import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { PlanReadError, renderPlanReview } from '../model/plan-review';
import type { ReviewArgs } from './cli-args';
import { EXIT } from './cli-args';
import type { CliIo } from './io';

/**
 * `tula-dsr review PLAN_JSON…`: prints the review of the plans on stdout. Exit codes a CI step can use: 0 when no
 * plan changes anything, 2 when one does, 1 when a plan cannot be read (the reason on stderr).
 */
export async function runReview(args: ReviewArgs, io: CliIo): Promise<number> {
  let plans: { source: string; text: string }[];
  try {
    plans = await Promise.all(args.plans.map(async (source) => ({ source, text: source === '-' ? await readStdin(io) : readPlanFile(io, source) })));
  } catch (error) {
    io.stderr(`tula-dsr: ${(error as Error).message}\n`);
    return EXIT.failed;
  }
  try {
    const { output, review } = renderPlanReview(plans, { format: args.format, maxChars: args.maxChars });
    io.stdout(output);
    return review.hasChanges ? EXIT.changes : EXIT.ok;
  } catch (error) {
    if (!(error instanceof PlanReadError)) throw error;
    io.stderr(`tula-dsr: ${error.message}\n`);
    return EXIT.failed;
  }
}

function readPlanFile(io: CliIo, source: string): string {
  try {
    return readFileSync(resolve(io.cwd, source), 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`${source}: cannot read the plan (${code === 'ENOENT' ? 'no such file' : (error as Error).message})`, { cause: error });
  }
}

function readStdin(io: CliIo): Promise<string> {
  if (!io.stdin) return Promise.reject(new Error("-: standard input is not available here; give the plan's JSON file instead"));
  return io.stdin();
}
