import { rmSync } from 'node:fs';
import { RUNTIME_DIR_ENV } from '../../agent/daemon/paths';
import { stopAgentDaemons } from '../../lab/agent-daemons';

export default async function globalTeardown(): Promise<void> {
  const dir = process.env[RUNTIME_DIR_ENV];
  if (!dir) return;
  await stopAgentDaemons(dir);
  rmSync(dir, { recursive: true, force: true });
}
