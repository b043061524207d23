import type { Block, ListItem, ReviewDocument } from './document';
import { plainText, type Inline, type InlinePart } from './inline';

/**
 * GitHub-flavoured Markdown for a pull-request comment. Every value that comes from a plan (names, paths, rules) is
 * escaped for where it lands, so that a construct path or a ruleset line cannot turn into markup, links or HTML.
 */
export function renderMarkdown(doc: ReviewDocument): string {
  return doc.map(block).join('\n\n') + '\n';
}

const escapeText = (text: string) => text.replace(/[\\`*_[\]<>|~&#]/g, (c) => `\\${c}`);
const escapeHtml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A code span whose delimiter is longer than any run of backticks inside it (CommonMark). */
function codeSpan(text: string, inTable: boolean): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  // GitHub splits table cells at a bare | even inside code spans.
  return `${fence}${pad}${inTable ? text.replace(/\|/g, '\\|') : text}${pad}${fence}`;
}

function part(p: InlinePart, inTable: boolean): string {
  if (typeof p === 'string') return escapeText(p);
  if ('code' in p) return codeSpan(p.code, inTable);
  return `**${escapeText(p.strong)}**`;
}

export const inline = (text: Inline, inTable = false): string => text.map((p) => part(p, inTable)).join('');

function listLines(items: readonly ListItem[], depth: number): string[] {
  return items.flatMap((item) => [`${'  '.repeat(depth)}- ${inline(item.text)}`, ...listLines(item.children ?? [], depth + 1)]);
}

const cutNote = (hidden: number, noun: string) => `*${hidden.toLocaleString('en-US')} more ${noun} not shown here (size limit).*`;

/** A fenced block longer than any backtick fence inside the lines, so no line can close it. */
function fenced(lines: readonly string[], language: string): string {
  const longest = Math.max(2, ...lines.map((l) => /^\s*(`{3,})/.exec(l)?.[1].length ?? 0));
  const fence = '`'.repeat(longest + 1);
  return [`${fence}${language}`, ...lines, fence].join('\n');
}

function block(b: Block): string {
  switch (b.kind) {
    case 'marker':
      return `<!-- ${b.text.replace(/--/g, '- -')} -->`;
    case 'heading':
      return `${'#'.repeat(b.level)} ${inline(b.text)}`;
    case 'paragraph':
      return inline(b.text);
    case 'alert':
      return [`> [!${b.level}]`, ...b.items.map((i) => `> - ${inline(i)}`)].join('\n');
    case 'list': {
      const shown = b.shown ?? b.items.length;
      const lines = listLines(b.items.slice(0, shown), 0);
      return shown < b.items.length ? [...lines, `- ${cutNote(b.items.length - shown, 'items')}`].join('\n') : lines.join('\n');
    }
    case 'table': {
      const shown = b.shown ?? b.rows.length;
      const rows = [
        `| ${b.header.map(escapeText).join(' | ')} |`,
        `|${b.header.map(() => '---').join('|')}|`,
        ...b.rows.slice(0, shown).map((row) => `| ${row.map((cell) => inline(cell, true)).join(' | ')} |`),
      ];
      return shown < b.rows.length ? `${rows.join('\n')}\n\n${cutNote(b.rows.length - shown, 'rows')}` : rows.join('\n');
    }
    case 'details': {
      const shown = b.shown ?? b.lines.length;
      const body = shown > 0 ? fenced(b.lines.slice(0, shown), 'diff') : '';
      const note = shown < b.lines.length ? cutNote(b.lines.length - shown, 'lines') : '';
      const inner = [body, note].filter(Boolean).join('\n\n');
      return `<details><summary>${escapeHtml(plainText(b.summary))}</summary>\n\n${inner}\n\n</details>`;
    }
  }
}
