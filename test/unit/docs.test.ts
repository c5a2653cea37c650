// Proves the documents stay true to the code: every link in README.md and docs/ points at a file
// of the repository (or a heading of the page), and both settings tables list exactly the
// environment variables src/config.ts reads.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const read = (file: string) => readFileSync(join(root, file), 'utf8');
const documents = ['README.md', 'docs/api.md', 'docs/decisions.md'];

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
const anchorsOf = (text: string) =>
  new Set(
    [...text.matchAll(/^#{1,6} (.+)$/gm)].map((match) =>
      match[1]!.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-'),
    ),
  );

describe('documents', () => {
  it.each(documents)('%s links only inside the repository, to files and headings that exist', (file) => {
    const text = read(file);
    const links = [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1]!);
    for (const link of links) {
      expect(link, `${file}: ${link}`).not.toMatch(/^[a-z]+:|^\/\/|\.\.\/shared/);
      const [target, anchor] = link.split('#');
      if (target === '') expect(anchorsOf(text), `${file}: ${link}`).toContain(anchor);
      else expect(existsSync(join(root, dirname(file), target!)), `${file}: ${link}`).toBe(true);
    }
  });

  it('README and docs/api.md list exactly the environment variables src/config.ts reads', () => {
    const source = read('src/config.ts');
    const environment = source.slice(source.indexOf('const environment = z.object({'), source.indexOf('});', source.indexOf('const environment')));
    const variables = [...environment.matchAll(/^ {2}([A-Z_]+):/gm)].map((match) => match[1]!).sort();
    expect(variables).toContain('PACKET_COUNT_MAX');
    expect(variables.length).toBeGreaterThanOrEqual(20);
    const readme = read('README.md');
    const api = read('docs/api.md');
    const section = (text: string, heading: string) => {
      const start = text.indexOf(heading);
      expect(start, heading).toBeGreaterThanOrEqual(0);
      const rest = text.slice(start);
      const rows = rest.split('\n').slice(1);
      const fromTable = rows.slice(rows.findIndex((line) => line.startsWith('|')));
      const end = fromTable.findIndex((line) => !line.startsWith('|'));
      const table = end === -1 ? fromTable : fromTable.slice(0, end);
      return table.flatMap((line) => [...(line.split('|')[1] ?? '').matchAll(/`([A-Z_]+)`/g)].map((match) => match[1]!)).sort();
    };
    expect(readme).toContain('[docs/api.md](docs/api.md)');
    expect(section(readme, '### Settings')).toEqual(variables);
    expect(section(api, '## Configuration (environment)')).toEqual(variables);
  });
});
