import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync, existsSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { SHA256_OF_STDIN, ensureDirCommand, readLineCommand, removeFilesCommand, renderCommand, sha256AssignCommand, shellQuote } from '../../model/shell';

describe('shellQuote', () => {
  test.each([
    ['plain word', 'eth0', 'eth0'],
    ['path', '/etc/sysctl.d/90-tula-dsr.conf', '/etc/sysctl.d/90-tula-dsr.conf'],
    ['address with prefix', '10.213.1.1/24', '10.213.1.1/24'],
    ['empty string', '', "''"],
    ['space', 'a b', "'a b'"],
    ['single quote', "it's", "'it'\\''s'"],
    ['assignment-looking word', 'A=b', "'A=b'"],
    ['dollar and backtick', '$HOME `id`', "'$HOME `id`'"],
    ['glob', '*.conf', "'*.conf'"],
    ['tilde', '~root', "'~root'"],
    ['newline', 'a\nb', "'a\nb'"],
  ])('%s', (_what, input, expected) => {
    expect(shellQuote(input)).toBe(expected);
  });

  test('rejects NUL', () => {
    expect(() => shellQuote('a\0b')).toThrow(new Error('cannot quote an argument containing a NUL byte: "a\\u0000b"'));
  });

  test('round-trips nasty arguments through a real sh', () => {
    // GIVEN arguments with every shell metacharacter
    const args = ["it's", '"dq"', '$(id)', '`id`', 'a\\b', '\n', ' ', '', '!', '#x', '-n', 'A=b', '*', ';|&<>()'];
    // WHEN rendered and parsed by sh
    const out = execFileSync('sh', ['-c', `for a in ${renderCommand(args)}; do printf '[%s]' "$a"; done`], { encoding: 'utf8' });
    // THEN sh sees exactly the original arguments
    expect(out).toBe(args.map((a) => `[${a}]`).join(''));
  });
});

describe('renderCommand', () => {
  test('quotes each argument once', () => {
    expect(renderCommand(['nft', '-f', '/tmp/x y'])).toBe("nft -f '/tmp/x y'");
  });

  test('rejects an empty argv', () => {
    expect(() => renderCommand([])).toThrow(new Error('cannot render an empty command'));
  });
});

describe('process-sparing fragments, run by a real sh (dash where it is installed)', () => {
  let dir: string;
  const sh = (script: string) => {
    const shell = existsSync('/bin/dash') ? '/bin/dash' : 'sh';
    return execFileSync(shell, ['-c', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tula-shell-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('ensureDirCommand makes a missing folder with the given umask, and leaves one that is there', () => {
    const path = join(dir, "a b/it's");
    expect(sh(`umask 077; ${ensureDirCommand(path, '022')} && echo ok`)).toBe('ok\n');
    expect(statSync(path).mode & 0o777).toBe(0o755);
    expect(statSync(join(dir, 'a b')).mode & 0o777).toBe(0o755);
    expect(sh(`${ensureDirCommand(path)} && echo again`)).toBe('again\n');
    // a folder that cannot be made fails the command
    expect(() => sh(ensureDirCommand('/proc/1/no-such-folder/x'))).toThrow();
  });

  test('removeFilesCommand removes what is there (a dangling link too), and is true when nothing is', () => {
    const [a, b, link] = ['a', 'b c', 'link'].map((n) => join(dir, n));
    writeFileSync(a, 'x');
    symlinkSync(join(dir, 'gone'), link);
    expect(sh(`${removeFilesCommand([a, b, link])} && echo ok`)).toBe('ok\n');
    expect([existsSync(a), existsSync(b)]).toEqual([false, false]);
    expect(() => lstatSync(link)).toThrow();
    expect(sh(`${removeFilesCommand([a, b])} && echo ok`)).toBe('ok\n');
    expect(removeFilesCommand([])).toBe(':');
  });

  test('sha256AssignCommand and SHA256_OF_STDIN give the 64 hex digits; an unreadable file gives an empty value and a failure', () => {
    const file = join(dir, "it's");
    writeFileSync(file, 'hello\n');
    const want = createHash('sha256').update('hello\n').digest('hex');
    expect(sh(`${sha256AssignCommand('h', file)} && echo "[$h]"`)).toBe(`[${want}]\n`);
    expect(sh(`printf 'hello\\n' | ${SHA256_OF_STDIN}`)).toBe(`${want}\n`);
    expect(sh(`${sha256AssignCommand('h', join(dir, 'missing'))}; echo "$? [$h]"`)).toMatch(/^[1-9]\d* \[\]\n$/);
    expect(() => sha256AssignCommand('h; rm -rf /', file)).toThrow('not a shell variable name');
  });

  test('readLineCommand reads the first line, and leaves the variable empty for a missing file', () => {
    const file = join(dir, 'pid');
    writeFileSync(file, '4242\nmore\n');
    expect(sh(`p=stale; ${readLineCommand('p', file)}; echo "[$p]"`)).toBe('[4242]\n');
    expect(sh(`p=stale; ${readLineCommand('p', join(dir, 'none'))}; echo "[$p]"`)).toBe('[]\n');
    expect(() => readLineCommand('1p', file)).toThrow('not a shell variable name');
  });
});
