/**
 * Loaded first by jest.cdktn.config.js: a run meant to test on cdktn must load cdktn, or it proves nothing.
 */
import { readFileSync } from 'node:fs';

const manifest = JSON.parse(readFileSync(require.resolve('cdktf/package.json'), 'utf8')) as { name: string; version: string };
if (manifest.name !== 'cdktn') {
  throw new Error(`jest.cdktn.config.js: 'cdktf' resolves to ${manifest.name} ${manifest.version}, not cdktn: run npm ci --prefix .ci/cdktn first`);
}
