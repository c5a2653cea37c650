// The two error channels: expected failures are outcomes (return values); these are the rest.

/** Something that must never happen did. Nobody catches it to carry on: the owner is dropped and rebuilt. */
export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}

/** A dependency (log, database) failed or is unreachable: the user gets 503, never a wrong answer. */
export class UnavailableError extends Error {
  override readonly name = 'UnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
