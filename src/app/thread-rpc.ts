// Calls between the main thread and a worker thread over one message port: the caller names
// a method and its arguments, the other side answers with a value or an error, and may also
// send events (notifications nobody waits for). Values cross by structured clone (plain data,
// Map, bigint, Blob). Errors cross as their fields and are rebuilt on arrival by name, so an
// UnavailableError thrown in the worker is still an UnavailableError (a 503) on the main thread.
import { UnavailableError, InvariantError } from '../domain/errors.js';
import { DataDirInUseError, type LockOwner } from '../ledger/data-dir-lock.js';

/** What both a Worker (main side) and parentPort (worker side) offer. */
export interface Port {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (message: unknown) => void): unknown;
}

type Message =
  | { readonly kind: 'call'; readonly id: number; readonly method: string; readonly args: readonly unknown[] }
  | { readonly kind: 'answer'; readonly id: number; readonly value?: unknown; readonly error?: SentError }
  | { readonly kind: 'event'; readonly name: string; readonly payload: unknown };

interface SentError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string | undefined;
  readonly fields: Record<string, unknown>;
  readonly cause?: SentError | undefined;
}

/** An error as data: its name, message, stack, own fields (code, dataDir…) and causes, a few deep. */
function sendable(error: unknown, depth = 0): SentError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), fields: {} };
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) {
    if (key === 'cause' || typeof value === 'function') continue;
    try {
      structuredClone(value);
      fields[key] = value;
    } catch {
      fields[key] = String(value);
    }
  }
  return { name: error.name, message: error.message, stack: error.stack, fields, cause: error.cause !== undefined && depth < 4 ? sendable(error.cause, depth + 1) : undefined };
}

/** The errors callers tell apart by class; any other comes back as an Error with the same name, fields and message. */
function rebuilt(sent: SentError): Error {
  const cause = sent.cause === undefined ? undefined : rebuilt(sent.cause);
  let error: Error;
  if (sent.name === 'UnavailableError') error = new UnavailableError(sent.message, { cause });
  else if (sent.name === 'InvariantError') error = new InvariantError(sent.message, { cause });
  else if (sent.name === 'DataDirInUseError') error = new DataDirInUseError(String(sent.fields.dataDir), sent.fields.owner as LockOwner);
  else {
    error = new Error(sent.message, { cause });
    Object.defineProperty(error, 'name', { value: sent.name, configurable: true, writable: true });
    for (const [key, value] of Object.entries(sent.fields)) if (!(key in error)) (error as unknown as Record<string, unknown>)[key] = value;
  }
  // Where it was thrown (the worker's stack), for whoever reads the logs.
  if (sent.stack !== undefined) error.stack = sent.stack;
  return error;
}

/** The calling side. */
export class RpcClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private closedWith: Error | undefined;

  constructor(
    private readonly port: Port,
    private readonly onEvent: (name: string, payload: unknown) => void = () => {},
  ) {
    port.on('message', (raw) => {
      const message = raw as Message;
      if (message.kind === 'event') return this.onEvent(message.name, message.payload);
      if (message.kind !== 'answer') return;
      const call = this.waiting.get(message.id);
      if (call === undefined) return;
      this.waiting.delete(message.id);
      if (message.error !== undefined) call.reject(rebuilt(message.error));
      else call.resolve(message.value);
    });
  }

  call<Result>(method: string, ...args: unknown[]): Promise<Result> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    return new Promise<Result>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.port.postMessage({ kind: 'call', id, method, args } satisfies Message);
    });
  }

  /** The other side is gone: every call in progress, and every later one, fails with `error`. */
  close(error: Error): void {
    this.closedWith ??= error;
    for (const call of this.waiting.values()) call.reject(error);
    this.waiting.clear();
  }
}

export type Handlers = Record<string, (...args: never[]) => unknown>;

/** The answering side: each call runs its handler; events go the other way through `emit`. */
export function serveRpc(port: Port, handlers: Handlers): { emit(name: string, payload: unknown): void } {
  port.on('message', (raw) => {
    const message = raw as Message;
    if (message.kind !== 'call') return;
    const handler = handlers[message.method] as ((...args: readonly unknown[]) => unknown) | undefined;
    const answer = (reply: { value?: unknown; error?: SentError }) => port.postMessage({ kind: 'answer', id: message.id, ...reply } satisfies Message);
    if (handler === undefined) return answer({ error: sendable(new Error(`no such method: ${message.method}`)) });
    // Promise.resolve().then: a handler that throws at once is answered like one that rejects.
    Promise.resolve()
      .then(() => handler(...message.args))
      .then(
        (value) => answer({ value }),
        (error: unknown) => answer({ error: sendable(error) }),
      );
  });
  return { emit: (name, payload) => port.postMessage({ kind: 'event', name, payload } satisfies Message) };
}
