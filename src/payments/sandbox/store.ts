// The sandbox's state in memory, written whole to <folder>/state.json after each change.
// Changes are made synchronously on the maps; `persist()` then resolves once a write that
// started after the change has reached the disk. Writes are coalesced: while one is running,
// every change waits for the single next one, so a burst of orders costs two writes, not N.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stateFile, STATE_VERSION, type DeliveryRecord, type OrderRecord, type StateFile } from './records.js';
import { writeFileAtomic } from './files.js';

export class SandboxStore {
  readonly orders = new Map<string, OrderRecord>();
  readonly deliveries = new Map<string, DeliveryRecord>();
  private readonly path: string | undefined;
  private writing: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  /** `folder` undefined: memory only, persist() is a no-op. */
  constructor(folder: string | undefined) {
    this.path = folder === undefined ? undefined : join(folder, 'state.json');
    if (this.path !== undefined && existsSync(this.path)) this.load(this.path);
  }

  private load(path: string): void {
    let state: StateFile;
    try {
      state = stateFile.parse(JSON.parse(readFileSync(path, 'utf8')));
    } catch (error) {
      throw new Error(`the sandbox state file ${path} cannot be read (${(error as Error).message})`, { cause: error });
    }
    for (const order of state.orders) this.orders.set(order.orderId, order);
    for (const delivery of state.deliveries) this.deliveries.set(delivery.deliveryId, delivery);
  }

  /** Resolves when the state as it is now is on disk; rejects if that write fails. */
  persist(): Promise<void> {
    const path = this.path;
    if (path === undefined) return Promise.resolve();
    if (this.writing === undefined) {
      this.writing = this.write(path).finally(() => (this.writing = undefined));
      return this.writing;
    }
    // A write is running with older state: wait for it, then one more that sees this change.
    this.next ??= this.writing
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.persist();
      });
    return this.next;
  }

  private write(path: string): Promise<void> {
    const state: StateFile = { version: STATE_VERSION, orders: [...this.orders.values()], deliveries: [...this.deliveries.values()] };
    return writeFileAtomic(path, JSON.stringify(state));
  }
}
