/**
 * Facts come back from one remote script as sections: a line `@@tula <name>` starts a section and everything up
 * to the next marker is its body. Lines before the first marker (a login banner, a shell's chatter) are junk and
 * ignored.
 */
export const SECTION_MARKER = '@@tula';

export function parseSections(output: string): Map<string, string> {
  // Each body is cut out of the output as it stands, not split into lines and joined again: the facts of a host with
  // ten thousand addresses are 70,000 lines. A body is every line between its marker line and the next one.
  const sections = new Map<string, string>();
  const marker = `${SECTION_MARKER} `;
  /** The start of the first line at or after `lineStart` (a line's start) that is a marker line, or -1. */
  const find = (lineStart: number): number => {
    if (output.startsWith(marker, lineStart)) return lineStart;
    const at = output.indexOf(`\n${marker}`, lineStart);
    return at < 0 ? -1 : at + 1;
  };
  for (let at = find(0); at >= 0;) {
    const eol = output.indexOf('\n', at);
    const name = output.slice(at + marker.length, eol < 0 ? output.length : eol).trim();
    if (eol < 0) {
      sections.set(name, '');
      break;
    }
    const next = find(eol + 1);
    sections.set(name, next < 0 ? output.slice(eol + 1) : output.slice(eol + 1, next - 1));
    at = next;
  }
  return sections;
}

/** Renders the shell line that opens a section. */
export function sectionLine(name: string): string {
  return `echo '${SECTION_MARKER} ${name}'`;
}
