/**
 * Facts come back from one remote script as sections: a line `@@tula <name>` starts a section and everything up
 * to the next marker is its body. Lines before the first marker (a login banner, a shell's chatter) are junk and
 * ignored.
 */
export const SECTION_MARKER = '@@tula';

export function parseSections(output: string): Map<string, string> {
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
    } else if (current !== null) {
      body.push(line);
    }
  }
  flush();
  return sections;
}

/** Renders the shell line that opens a section. */
export function sectionLine(name: string): string {
  return `echo '${SECTION_MARKER} ${name}'`;
}
