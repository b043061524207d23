import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RUNTIME_DIR_ENV } from '../../agent/daemon/paths';
import { CACHE_DIR_ENV } from '../../agent/facts/file-cache';

/**
 * Agent daemons that tests start (Terraform's provisioners reach the agent through one) live in a folder of this
 * run's own, so that global-teardown can stop every one of them and no user's daemon is touched.
 */
export default function globalSetup(): void {
  process.env[RUNTIME_DIR_ENV] = mkdtempSync(join(tmpdir(), 'tula-dsr-test-run-'));
  // the agent's copies of hosts' files (FileCache), which the CLI keeps under the user's ~/.cache otherwise
  process.env[CACHE_DIR_ENV] = mkdtempSync(join(tmpdir(), 'tula-dsr-test-cache-'));
}
