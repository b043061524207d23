import { rmSync } from 'node:fs';
import { RUNTIME_DIR_ENV } from '../../agent/daemon/paths';
import { CACHE_DIR_ENV } from '../../agent/facts/file-cache';
import { stopAgentDaemons } from '../../lab/agent-daemons';

export default async function globalTeardown(): Promise<void> {
  const cache = process.env[CACHE_DIR_ENV];
  if (cache) rmSync(cache, { recursive: true, force: true });
  const dir = process.env[RUNTIME_DIR_ENV];
  if (!dir) return;
  await stopAgentDaemons(dir);
  rmSync(dir, { recursive: true, force: true });
}
