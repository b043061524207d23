import type { Block, ListItem, ReviewDocument } from './document';
import { plainText } from './inline';

/** The review as plain text for a terminal: the same blocks as the Markdown, with the diffs inline, not folded. */
export function renderText(doc: ReviewDocument): string {
  return doc.flatMap((b) => block(b) ?? []).join('\n\n') + '\n';
}

function listLines(items: readonly ListItem[], depth: number): string[] {
  return items.flatMap((item) => [`${'  '.repeat(depth + 1)}- ${plainText(item.text)}`, ...listLines(item.children ?? [], depth + 1)]);
}

const cutNote = (hidden: number, noun: string) => `(${hidden.toLocaleString('en-US')} more ${noun} not shown here: size limit)`;

function table(header: readonly string[], rows: readonly string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (i < r.length - 1 ? r[i].length : 0))));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i < cells.length - 1 ? c.padEnd(widths[i]) : c)).join('  ');
  return [line(header), line(widths.map((w, i) => '-'.repeat(i < widths.length - 1 ? w : header[i].length))), ...rows.map(line)];
}

function block(b: Block): string | undefined {
  switch (b.kind) {
    case 'marker':
      return undefined;
    case 'heading': {
      const text = plainText(b.text);
      return b.level === 4 ? text : `${text}\n${(b.level === 2 ? '=' : '-').repeat(text.length)}`;
    }
    case 'paragraph':
      return plainText(b.text);
    case 'alert':
      return [`${b.level}:`, ...b.items.map((i) => `  ! ${plainText(i)}`)].join('\n');
    case 'list': {
      const shown = b.shown ?? b.items.length;
      const lines = listLines(b.items.slice(0, shown), 0);
      return shown < b.items.length ? [...lines, `  ${cutNote(b.items.length - shown, 'items')}`].join('\n') : lines.join('\n');
    }
    case 'table': {
      const shown = b.shown ?? b.rows.length;
      const lines = table(
        b.header,
        b.rows.slice(0, shown).map((row) => row.map(plainText)),
      );
      return (shown < b.rows.length ? [...lines, cutNote(b.rows.length - shown, 'rows')] : lines).join('\n');
    }
    case 'details': {
      const shown = b.shown ?? b.lines.length;
      const lines = [plainText(b.summary), ...b.lines.slice(0, shown).map((l) => `    ${l}`)];
      return (shown < b.lines.length ? [...lines, `    ${cutNote(b.lines.length - shown, 'lines')}`] : lines).join('\n');
    }
  }
}
