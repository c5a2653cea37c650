// Proves the layering of DESIGN.md §4 from the source itself: every relative import of src/
// is read, and an arrow that points up (domain ← engine ← app ← http), or an http/ file that
// reaches past the application service, fails the suite with the offending import named.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/** Lower layers first. A file may import its own part, or a part of a lower layer. */
const LAYER_OF_PART: Record<string, number> = {
  money: 0,
  domain: 1,
  log: 2,
  engine: 3,
  ledger: 3,
  cache: 4,
  jobs: 4,
  payments: 4,
  notify: 4,
  'config.ts': 4,
  app: 5,
  http: 6,
  'main.ts': 7,
};

/** What http/ may import besides its own files. */
const HTTP_MAY_IMPORT = [/^app\/service\.ts$/, /^domain\//, /^money\//];

function sourceFiles(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

/** src-relative paths of the project files a file imports (static, dynamic and type-only). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.[^'"]+)['"]/g)].map((match) => match[1]!);
  return specifiers.map((specifier) => relative(SRC, resolve(dirname(file), specifier)).replace(/\.js$/, '.ts'));
}

const partOf = (path: string) => path.split('/')[0]!;

function violations(): string[] {
  const found: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const from = relative(SRC, file);
    const fromPart = partOf(from);
    const fromLayer = LAYER_OF_PART[fromPart];
    if (fromLayer === undefined) {
      found.push(`${from}: part "${fromPart}" has no layer in this test`);
      continue;
    }
    for (const target of importsOf(file)) {
      const toPart = partOf(target);
      if (toPart === fromPart) continue;
      const toLayer = LAYER_OF_PART[toPart];
      if (toLayer === undefined) found.push(`${from} → ${target}: outside src/ or a part without a layer`);
      else if (toLayer >= fromLayer) found.push(`${from} → ${target}: points up or sideways (${fromPart} ${fromLayer} → ${toPart} ${toLayer})`);
      if (fromPart === 'http' && !HTTP_MAY_IMPORT.some((allowed) => allowed.test(target))) {
        found.push(`${from} → ${target}: http/ may import only the application service, domain/, money/ and its own files`);
      }
    }
  }
  return found;
}

/** Specifiers a file imports as values (type-only imports erased), relative or packages. */
function valueImportsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const statements = [...text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+['"]([^'"]+)['"]/gm)].map((match) => match[1]!);
  const dynamic = [...text.matchAll(/import\s*\(\s*['"]([^'"]+)['"]/g)].map((match) => match[1]!);
  return [...statements, ...dynamic];
}

/** Every src file the main thread loads, from main.ts (a worker's entry is started, never imported). */
function mainThreadModules(): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    const from = relative(SRC, file);
    if (files.has(from)) return;
    files.add(from);
    for (const specifier of valueImportsOf(file)) {
      if (specifier.startsWith('.')) visit(resolve(dirname(file), specifier).replace(/\.js$/, '.ts'));
      else packages.add(specifier);
    }
  };
  visit(join(SRC, 'main.ts'));
  return { files, packages };
}

describe('architecture', () => {
  it('the main thread (HTTP and the engine) never loads a database driver: SQL runs in the storage thread', () => {
    const { files, packages } = mainThreadModules();
    expect(files).toContain('app/compose.ts');
    expect(files).toContain('http/app.ts');
    expect(files).not.toContain('app/storage-worker.ts');
    expect(files).not.toContain('ledger/database.ts');
    expect(files).not.toContain('log/table-log.ts');
    expect(files).not.toContain('ledger/ledger-consumer.ts');
    // ('pg' is there for one session only: the engine lock of the table log on a server, advisory-lock.ts.)
    expect([...packages].filter((name) => /pglite|drizzle-orm\/(pglite|node-postgres)/.test(name))).toEqual([]);
  });

  it('reads the imports it judges (the walk is not vacuous)', () => {
    const all = sourceFiles(SRC).flatMap((file) => importsOf(file));
    expect(all).toContain('app/service.ts');
    expect(all).toContain('domain/packet.ts');
    expect(importsOf(join(SRC, 'http/app.ts'))).toContain('app/service.ts');
  });

  it('every arrow points down, and http/ knows only the application service, domain/ and money/', () => {
    expect(violations()).toEqual([]);
  });
});
