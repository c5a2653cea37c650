// Once per test run: one PGlite database is migrated and dumped to a file; every suite then
// loads a copy of it (about 0.5 s) instead of creating and migrating its own (2–5 s).
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { migratedTemplate } from '../../src/ledger/database.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteTemplatePath: string;
  }
}

export default async function setup(project: TestProject) {
  const path = join(tmpdir(), `hongbao-pglite-template-${process.pid}.tar`);
  writeFileSync(path, Buffer.from(await (await migratedTemplate()).arrayBuffer()));
  project.provide('pgliteTemplatePath', path);
  return () => rmSync(path, { force: true });
}
