// The migrated PGlite template of this test run (made by global-setup.ts), read once per worker.
import { readFileSync } from 'node:fs';
import { inject } from 'vitest';
import { openDatabase, type Database } from '../../src/ledger/database.js';

let template: Blob | undefined;

export function pgliteTemplate(): Blob {
  return (template ??= new Blob([readFileSync(inject('pgliteTemplatePath'))]));
}

/** A fresh in-memory database, already migrated. */
export function openTestDatabase(): Promise<Database> {
  return openDatabase({ dataDir: 'memory', loadDataDir: pgliteTemplate() });
}
