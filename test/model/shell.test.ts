import { execFileSync } from 'node:child_process';
import { shellQuote, renderCommand } from '../../model/shell';

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
