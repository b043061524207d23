/**
 * writeFileStep run by the real /bin/sh in a private temp folder, under the apply script's umask: each file gets its
 * mode (from the umask it is created with for 0644 and 0600, from chmod for others), whatever a killed run left.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SCRIPT_UMASK, writeFileStep } from '../../agent/tasks/steps';

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'tula-write-step-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const runStep = (script: string) => execFileSync('/bin/sh', ['-c', `umask ${SCRIPT_UMASK}; ${script}; echo "umask after: $(umask)"`]).toString();
const modeOf = (path: string) => (statSync(path).mode & 0o777).toString(8).padStart(4, '0');

describe('writeFileStep', () => {
  test.each(['0644', '0600', '0755', '0640'])('GIVEN mode %s THEN the file has it and its content, and the script keeps its umask', (mode) => {
    const path = join(dir, 'sub', 'f.conf');
    const out = runStep(writeFileStep(path, 'a=1\n', mode, false).run);
    expect(modeOf(path)).toBe(mode);
    expect(readFileSync(path, 'utf8')).toBe('a=1\n');
    expect(out).toBe(`umask after: 0${SCRIPT_UMASK}\n`);
    // the folder it created stays readable, as /etc's are
    expect(modeOf(join(dir, 'sub'))).toBe('0755');
  });

  test('GIVEN a temp file a killed run left, private and with other text THEN the file still gets 0644 and only the new text', () => {
    const path = join(dir, 'f.conf');
    writeFileSync(`${path}.tula-tmp`, 'stale and longer than the new text\n');
    chmodSync(`${path}.tula-tmp`, 0o600);
    runStep(writeFileStep(path, 'b=2\n', '0644', false).run);
    expect(modeOf(path)).toBe('0644');
    expect(readFileSync(path, 'utf8')).toBe('b=2\n');
  });

  test('GIVEN an existing file and a patch base THEN the patched file gets 0644 and the backup keeps the old one', () => {
    const path = join(dir, 'f.conf');
    const old = Array.from({ length: 50 }, (_, i) => `line ${i}`).join('\n') + '\n';
    writeFileSync(path, old);
    chmodSync(path, 0o600);
    const next = old.replace('line 7\n', 'line seven\n');
    runStep(writeFileStep(path, next, '0644', true, { path, content: old }).run);
    expect(modeOf(path)).toBe('0644');
    expect(readFileSync(path, 'utf8')).toBe(next);
    expect(modeOf(`${path}.tula-bak`)).toBe('0600');
  });
});
