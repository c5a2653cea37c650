// The records' calendar (China Standard Time) and their paging cursor: plain functions, apart from
// the queries in records.ts so that the HTTP thread can use them without loading a database driver.

export const RECORDS_PAGE_SIZE = 20;
const UTC_OFFSET_MS = 8 * 60 * 60 * 1000;

/** The records year a moment falls in (China Standard Time). */
export function recordsYearOf(nowMs: number): number {
  return new Date(nowMs + UTC_OFFSET_MS).getUTCFullYear();
}

export function yearBounds(year: number): { from: string; to: string } {
  return {
    from: new Date(Date.UTC(year, 0, 1) - UTC_OFFSET_MS).toISOString(),
    to: new Date(Date.UTC(year + 1, 0, 1) - UTC_OFFSET_MS).toISOString(),
  };
}

/** An opaque cursor: the (time, id) of the last item of the previous page. */
export interface Cursor {
  readonly atMs: number;
  readonly id: string;
}

export const encodeCursor = (cursor: Cursor) => Buffer.from(JSON.stringify([cursor.atMs, cursor.id])).toString('base64url');

/** The latest moment a JavaScript Date (and so a cursor time) can name. */
const DATE_MS_MAX = 8.64e15;
/** Cursor ids are packet ids: what the API issues (and a forged one cannot smuggle NUL or quotes). */
const CURSOR_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** The cursor a text names, or null when it is not one this API made (validated field by field). */
export function decodeCursor(text: string): Cursor | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch (error) {
    // Not JSON: not a cursor we made. Only a SyntaxError is expected here.
    if (!(error instanceof SyntaxError)) throw error;
    return null;
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) return null;
  const [atMs, id] = parsed as unknown[];
  if (!Number.isSafeInteger(atMs) || (atMs as number) < 0 || (atMs as number) > DATE_MS_MAX) return null;
  if (typeof id !== 'string' || !CURSOR_ID_PATTERN.test(id)) return null;
  return { atMs: atMs as number, id };
}
