/**
 * Facts sections: cut out of the output as they stand (model/sections.ts), with exactly the bodies the line-by-line
 * reading gave: checked on fixed edge cases and on thousands of random outputs made of markers, line breaks and text.
 */
import { SECTION_MARKER, parseSections } from '../../model';

/** The line-by-line reading the parser replaced, as the reference. */
function byLines(output: string): Map<string, string> {
  const sections = new Map<string, string>();
  let current: string | null = null;
  let body: string[] = [];
  const flush = () => {
    if (current !== null) sections.set(current, body.join('\n'));
  };
  for (const line of output.split('\n')) {
    if (line.startsWith(`${SECTION_MARKER} `)) {
      flush();
      current = line.slice(SECTION_MARKER.length + 1).trim();
      body = [];
    } else if (current !== null) body.push(line);
  }
  flush();
  return sections;
}

test.each([
  '',
  '@@tula x',
  '@@tula x\n',
  'banner\n@@tula a\n\n@@tula b\nl1\r\nl2\n\n',
  '@@tula  a  \n@@tula a\nx',
  'x@@tula a\n@@tula\n@@tula b',
  '\n@@tula a\nb\n@@tula c',
  '@@tulax\n@@tula y\nz\n@@tula ',
  '@@tula a\nfoo @@tula b\n@@tula c\n\n\n',
])('GIVEN %j WHEN parsed THEN the sections are those of the line-by-line reading', (output) => {
  expect([...parseSections(output)]).toEqual([...byLines(output)]);
});

test('GIVEN 20,000 random outputs WHEN parsed THEN the sections are those of the line-by-line reading', () => {
  const parts = ['@@tula ', '@@tula', 'x', '\n', '\n', ' ', 'a', '\r', 'b\n', '@@tula end\n'];
  let seed = 1;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
  for (let i = 0; i < 20000; i++) {
    let output = '';
    for (let j = next() % 16; j > 0; j--) output += parts[next() % parts.length];
    expect([...parseSections(output)]).toEqual([...byLines(output)]);
  }
});
