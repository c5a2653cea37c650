// Time is passed in, so the engine and its simulation are deterministic.
export interface Clock {
  now(): number;
}

/** A clock a test moves by hand. */
export class ManualClock implements Clock {
  constructor(private timeMs = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.timeMs;
  }
  advance(ms: number): void {
    this.timeMs += ms;
  }
}
