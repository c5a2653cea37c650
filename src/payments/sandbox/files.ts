// Durable little files: written to a temporary name, flushed, then renamed over the old one, so
// a crash leaves either the previous version or the new one, never half of either.
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';

export function writeFileAtomicSync(path: string, text: string, mode = 0o600): void {
  const temporary = `${path}.tmp`;
  const descriptor = openSync(temporary, 'w', mode);
  try {
    writeSync(descriptor, text);
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
  renameSync(temporary, path);
}

/** The caller serializes writes to one path (they share the temporary name). */
export async function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  const temporary = `${path}.tmp`;
  const handle = await open(temporary, 'w', mode);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
}
