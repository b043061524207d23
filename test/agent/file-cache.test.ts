/**
 * The agent's copies of hosts' large files (FileCache): private folders made only when a copy is written, copies
 * whole or absent, and a folder someone else could write to is not trusted.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheRoot, hostFileCache } from '../../agent/facts/file-cache';
import { PATCH_MIN_BYTES } from '../../agent/tasks/steps';

let base: string;
beforeEach(() => (base = mkdtempSync(join(tmpdir(), 'tula-file-cache-'))));
afterEach(() => rmSync(base, { recursive: true, force: true }));

const large = (tag: string) => `${tag}\n${'x'.repeat(PATCH_MIN_BYTES)}\n`;

test('GIVEN no copies yet WHEN a host is read, or only small files are kept THEN nothing is created', () => {
  const root = join(base, 'cache');
  const cache = hostFileCache(root, 'backend be1 root@10.0.0.2:22')!;
  expect(cache.read(['/etc/a'])).toEqual({});
  cache.write([{ path: '/etc/a', content: 'small\n' }]);
  expect(existsSync(root)).toBe(false);
});

test('GIVEN a large file kept WHEN read again THEN the copy comes back with its hash, in folders only the user may enter', () => {
  const root = join(base, 'cache');
  const cache = hostFileCache(root, 'balancer lb root@10.0.0.1:22')!;
  cache.write([{ path: '/etc/tula-dsr/balancer.nft', content: large('one') }]);
  const copy = cache.read(['/etc/tula-dsr/balancer.nft', '/etc/other'])['/etc/tula-dsr/balancer.nft'];
  expect(copy.content).toBe(large('one'));
  expect(copy.sha256).toMatch(/^[0-9a-f]{64}$/);
  expect(Object.keys(cache.read(['/etc/other']))).toEqual([]);
  const [hostDir] = readdirSync(root);
  expect(statSync(root).mode & 0o777).toBe(0o700);
  expect(statSync(join(root, hostDir)).mode & 0o777).toBe(0o700);
  for (const f of readdirSync(join(root, hostDir))) expect(statSync(join(root, hostDir, f)).mode & 0o777).toBe(0o600);
  // another host's copies are its own
  expect(hostFileCache(root, 'balancer lb2 root@10.0.0.9:22')!.read(['/etc/tula-dsr/balancer.nft'])).toEqual({});
  cache.clear();
  expect(cache.read(['/etc/tula-dsr/balancer.nft'])).toEqual({});
});

test('GIVEN the cache folder open to other users WHEN read or written THEN it is not used', () => {
  const root = join(base, 'cache');
  const cache = hostFileCache(root, 'balancer lb root@10.0.0.1:22')!;
  cache.write([{ path: '/etc/x', content: large('one') }]);
  chmodSync(root, 0o777);
  expect(cache.read(['/etc/x'])).toEqual({});
  cache.write([{ path: '/etc/x', content: large('two') }]);
  chmodSync(root, 0o700);
  expect(cache.read(['/etc/x'])['/etc/x'].content).toBe(large('one'));
});

test('GIVEN the environment WHEN the root is chosen THEN TULA_DSR_CACHE_DIR, else XDG_CACHE_HOME, else ~/.cache; off turns it off', () => {
  expect(cacheRoot({ TULA_DSR_CACHE_DIR: '/x/y', XDG_CACHE_HOME: '/c', HOME: '/h' })).toBe('/x/y');
  expect(cacheRoot({ XDG_CACHE_HOME: '/c', HOME: '/h' })).toBe('/c/tula-dsr');
  expect(cacheRoot({ HOME: '/h' })).toBe('/h/.cache/tula-dsr');
  expect(cacheRoot({ TULA_DSR_CACHE_DIR: 'off', HOME: '/h' })).toBeNull();
});
