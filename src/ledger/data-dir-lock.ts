// One process per embedded data folder. PGlite takes no lock of its own (two openers both
// succeed and corrupt the folder; its postmaster.pid holds -42), so the folder gets a lock
// file holding the owner's pid, host and start time. It appears atomically and complete: it
// is written under a private name and then hard-linked into place, which fails if the name
// exists. A lock whose process is gone (kill -9 leaves it behind) is taken over.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';

export const LOCK_FILE_NAME = 'hongbao.lock';
/** Attempts to create the lock while stale ones are being taken over (by us or by a racing start). */
const ACQUIRE_ATTEMPTS_MAX = 5;

export interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
}

export class DataDirInUseError extends Error {
  override readonly name = 'DataDirInUseError';
  constructor(
    readonly dataDir: string,
    readonly owner: LockOwner,
  ) {
    const where = owner.host === hostname() ? '' : ` on host ${owner.host}`;
    super(`DATA_DIR ${dataDir} is in use by process ${owner.pid}${where} (started ${owner.startedAt}); stop it first or use another DATA_DIR`);
  }
}

/** Folders locked by this process: a second open in the same process is refused too. */
const heldHere = new Set<string>();

export interface DataDirLock {
  readonly path: string;
  release(): void;
}

export function acquireDataDirLock(dataDir: string, startedAt = new Date()): DataDirLock {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE_NAME);
  const content = JSON.stringify({ pid: process.pid, host: hostname(), startedAt: startedAt.toISOString() } satisfies LockOwner);
  const draft = `${path}.${process.pid}.draft`;
  writeFileSync(draft, content, { flag: 'w' });
  try {
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS_MAX; attempt += 1) {
      try {
        linkSync(draft, path);
        heldHere.add(path);
        return { path, release: () => release(path, content) };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const existing = readIfPresent(path);
      if (existing === undefined) continue; // released meanwhile: try again
      const owner = parseOwner(existing);
      if (owner !== undefined && isAlive(owner, path)) throw new DataDirInUseError(dataDir, owner);
      takeOverStale(path, existing);
    }
    throw new Error(`could not take the lock ${path}: it kept changing under ${ACQUIRE_ATTEMPTS_MAX} attempts`);
  } finally {
    unlinkSync(draft);
  }
}

function release(path: string, content: string): void {
  if (!heldHere.delete(path)) return;
  // Only our own lock: never remove one another process took over meanwhile.
  if (readIfPresent(path) === content) unlinkSync(path);
}

function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockOwner>;
    if (typeof value.pid === 'number' && typeof value.host === 'string' && typeof value.startedAt === 'string') return value as LockOwner;
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
  }
  // Never written by us (the link makes a lock appear complete): not a lock to respect.
  return undefined;
}

function isAlive(owner: LockOwner, path: string): boolean {
  // Another host's process cannot be probed from here: assume it runs.
  if (owner.host !== hostname()) return true;
  // Our own pid: held by this process, or left by an earlier one that had the same pid (a container's pid 1).
  if (owner.pid === process.pid) return heldHere.has(path);
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Removes a stale lock, but only the one judged stale: it is first moved aside and compared,
 * so a fresh lock that a racing start created meanwhile is put back, not deleted.
 */
function takeOverStale(path: string, stale: string): void {
  const aside = `${path}.${process.pid}.stale`;
  try {
    renameSync(path, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it
    throw error;
  }
  if (readFileSync(aside, 'utf8') !== stale) {
    try {
      linkSync(aside, path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  unlinkSync(aside);
}
