/**
 * Where a run reads its environment and working folder and writes its output. The agent daemon serves each
 * provisioner with that provisioner's own environment and folder, so the agent takes none of them from `process`.
 */
export interface CliIo {
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Ends the run early (the caller went away): no host starts applying changes after this. */
  readonly signal?: AbortSignal;
  /** Reads all of standard input; absent where there is none to read (runs served by the agent daemon). */
  readonly stdin?: () => Promise<string>;
  /** stdout is a terminal (stats --watch then redraws the screen). */
  readonly stdoutIsTty?: boolean;
}

export function processIo(): CliIo {
  return {
    env: process.env,
    cwd: process.cwd(),
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    stdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
    stdoutIsTty: process.stdout.isTTY === true,
  };
}
