import { MarkerScanner } from '../../../agent/ssh/shell-channel';

const chunksOf = (text: string, size: number) =>
  Array.from({ length: Math.ceil(text.length / size) }, (_, i) => Buffer.from(text.slice(i * size, (i + 1) * size)));

describe('the end marker of a run in a shared shell', () => {
  const marker = 'tula-dsr-end-0123456789abcdef01234567 ';
  const output = 'line 1\nline 2 tula-dsr-end- looks alike\nno newline at the end';

  test.each([1, 2, 3, 7, 40, 1000])(
    'GIVEN output and its marker line in chunks of %i bytes THEN the run ends on the marker line, with what came before it',
    (size) => {
      const scanner = new MarkerScanner(Buffer.from(marker));
      const chunks = chunksOf(`${output}${marker}17\n`, size);
      const doneAt = chunks.findIndex((c) => scanner.push(c));
      expect(doneAt).toBe(chunks.length - 1);
      expect(scanner.line).toBe('17');
      expect(scanner.before()).toBe(output);
    },
  );

  test('GIVEN the marker without its newline yet THEN the run is not done; all output counts while no marker came', () => {
    const scanner = new MarkerScanner(Buffer.from(marker));
    expect(scanner.push(Buffer.from(output))).toBe(false);
    expect(scanner.before()).toBe(output);
    expect(scanner.push(Buffer.from(`${marker}0`))).toBe(false);
    expect(scanner.line).toBeUndefined();
    expect(scanner.push(Buffer.from('\n'))).toBe(true);
    expect(scanner.line).toBe('0');
    expect(scanner.before()).toBe(output);
  });

  test('GIVEN multibyte text cut inside a character THEN it comes back whole', () => {
    const scanner = new MarkerScanner(Buffer.from(marker));
    const bytes = Buffer.from(`größe ✓${marker}0\n`);
    expect(scanner.push(bytes.subarray(0, 3))).toBe(false);
    expect(scanner.push(bytes.subarray(3))).toBe(true);
    expect(scanner.before()).toBe('größe ✓');
  });
});
