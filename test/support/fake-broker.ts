// What matters of Kafka for one topic's slot writers, in memory and deterministic: per slot one
// transactionalId with its current epoch (InitProducerId bumps it and aborts the id's open
// transaction; a transaction left open too long is aborted with a bump as well), transactions of
// AddPartitionsToTxn + Produce + EndTxn each checked against the current epoch (a stale one gets
// INVALID_PRODUCER_EPOCH, which the real isFencedError recognizes; Produce also needs the
// transaction open, as KIP-890's partition verification does), and the committed records of each
// partition in order (the read_committed view).
//
// Between the producers and the broker is a network the simulation drives: a request or its
// answer may be held (delivered later, in any order), lost, or never sent because its process is
// cut off; a request the broker receives late is applied then, against the epoch of that moment.
// A process (Host) can be paused (nothing it would run runs, answers wait for it), killed, or cut.
// Time is the test's fake setTimeout; the producers keep kafka-slot-producer.ts's deadline: a call
// not done in APPEND_DEADLINE_MS cuts the producer and fails with an outcome unknown.
import type { PacketEvent } from '../../src/log/events.js';
import { APPEND_DEADLINE_MS } from '../../src/log/kafka-client.js';
import { isFencedError, TRANSACTION_TIMEOUT_MS } from '../../src/log/kafka-slot-producer.js';
import type { SlotProducer, SlotProducerFactory } from '../../src/log/slot-writers.js';

export { APPEND_DEADLINE_MS, TRANSACTION_TIMEOUT_MS };

/** A broken invariant of the fake itself (never an expected failure of the code under test). */
export class FakeBrokerInvariantError extends Error {
  override readonly name = 'FakeBrokerInvariantError';
}

/** Kafka's answer to a stale epoch, shaped as kafkajs surfaces it (KafkaJSProtocolError, code 47). */
export function fencedError(detail: string): Error {
  return Object.assign(new Error(`The producer attempted to use a producer id which is currently assigned to another producer (${detail})`), {
    name: 'KafkaJSProtocolError',
    type: 'INVALID_PRODUCER_EPOCH',
    code: 47,
    retriable: false,
  });
}

function invalidTxnStateError(detail: string): Error {
  return Object.assign(new Error(`The producer attempted a transactional operation in an invalid state (${detail})`), {
    name: 'KafkaJSProtocolError',
    type: 'INVALID_TXN_STATE',
    code: 48,
    retriable: false,
  });
}

// ---- processes ----------------------------------------------------------------------------

/** What a paused process has waiting: an expired timer, or something that arrived (an answer, an assignment). */
type Deferred = { readonly kind: 'timer' | 'arrival'; readonly work: () => void };

/** A process as the network and the clock see it. */
export class Host {
  paused = false;
  dead = false;
  /** Cut off from the broker: what it sends is lost, answers to it are lost. */
  cut = false;
  private deferred: Deferred[] = [];

  constructor(readonly name: string) {}

  get runnable(): boolean {
    return !this.dead && !this.paused;
  }

  /** Runs work as this process would: now if it runs, once it resumes if paused, never if dead. */
  run(work: () => void, kind: Deferred['kind'] = 'arrival'): void {
    if (this.dead) return;
    if (this.paused) this.deferred.push({ kind, work });
    else work();
  }

  pause(): void {
    this.paused = true;
  }

  /**
   * SIGCONT: whatever came due or arrived during the pause runs now. Node's event loop may run
   * the expired timers before the I/O that arrived (it stopped before its timers phase) or in
   * arrival order; the caller says which, so a deadline can win over an answer that came in time.
   */
  resume(timersFirst = false): void {
    this.paused = false;
    const waiting = this.deferred.splice(0);
    const ordered = timersFirst ? [...waiting.filter((each) => each.kind === 'timer'), ...waiting.filter((each) => each.kind !== 'timer')] : waiting;
    for (const each of ordered) this.run(each.work, each.kind);
  }

  kill(): void {
    this.dead = true;
    this.deferred = [];
  }

  /** A timer of this process on the test's fake clock: a pause holds it back, death cancels it. */
  setTimeout(work: () => void, delayMs: number): () => void {
    const timer = setTimeout(() => this.run(work, 'timer'), delayMs);
    return () => clearTimeout(timer);
  }
}

// ---- the network --------------------------------------------------------------------------

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

export interface Rpc {
  readonly id: number;
  readonly host: Host;
  readonly label: string;
  /** 'request': not yet at the broker; 'response': applied, the answer not yet back. */
  stage: 'request' | 'response';
  outcome: Outcome | undefined;
  readonly apply: () => unknown;
  readonly answer: (outcome: Outcome) => void;
}

export class Network {
  /** Chance that a request, or an answer, is held for the simulation to deliver (or lose) later. */
  holdRate = 0;
  readonly inFlight: Rpc[] = [];
  readonly counts = { sent: 0, held: 0, lostByCut: 0, lost: 0 };
  private nextRpcId = 1;

  constructor(
    private readonly random: () => number,
    private readonly trace: (line: string) => void,
  ) {}

  /** Sends a request; the promise settles when (if) its answer reaches the sender. */
  send<T>(host: Host, label: string, apply: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const rpc: Rpc = {
        id: this.nextRpcId++,
        host,
        label,
        stage: 'request',
        outcome: undefined,
        apply,
        answer: (outcome) => (outcome.ok ? resolve(outcome.value as T) : reject(outcome.error)),
      };
      host.run(() => {
        this.counts.sent += 1;
        if (host.cut) {
          this.counts.lostByCut += 1;
          this.trace(`  net #${rpc.id} ${label}: lost (sender cut off)`);
          return;
        }
        if (this.random() < this.holdRate) this.hold(rpc);
        else this.request(rpc);
      });
    });
  }

  /** The broker receives the held request (or the sender its held answer) now. */
  progress(rpc: Rpc): void {
    this.remove(rpc);
    if (rpc.stage === 'request') this.request(rpc);
    else this.respond(rpc);
  }

  lose(rpc: Rpc): void {
    this.remove(rpc);
    this.counts.lost += 1;
    this.trace(`  net #${rpc.id} ${rpc.label}: ${rpc.stage} lost`);
  }

  /** Delivers everything held, oldest first, until nothing is held. */
  flush(): void {
    for (let rounds = 0; this.inFlight.length > 0; rounds += 1) {
      if (rounds > 100_000) throw new FakeBrokerInvariantError('the network does not drain');
      this.progress(this.inFlight[0]!);
    }
  }

  private hold(rpc: Rpc): void {
    this.counts.held += 1;
    this.inFlight.push(rpc);
  }

  private remove(rpc: Rpc): void {
    const index = this.inFlight.indexOf(rpc);
    if (index < 0) throw new FakeBrokerInvariantError(`rpc #${rpc.id} is not in flight`);
    this.inFlight.splice(index, 1);
  }

  private request(rpc: Rpc): void {
    try {
      rpc.outcome = { ok: true, value: rpc.apply() };
    } catch (error) {
      if (error instanceof FakeBrokerInvariantError) throw error;
      rpc.outcome = { ok: false, error };
    }
    rpc.stage = 'response';
    this.trace(`  net #${rpc.id} ${rpc.label}: applied → ${rpc.outcome.ok ? `ok ${String(rpc.outcome.value ?? '')}` : (rpc.outcome.error as { type?: string }).type ?? 'error'}`);
    if (this.random() < this.holdRate) this.hold(rpc);
    else this.respond(rpc);
  }

  private respond(rpc: Rpc): void {
    if (rpc.host.cut) {
      this.counts.lostByCut += 1;
      this.trace(`  net #${rpc.id} ${rpc.label}: answer lost (receiver cut off)`);
      return;
    }
    const outcome = rpc.outcome!;
    rpc.host.run(() => rpc.answer(outcome));
  }
}

// ---- the broker ---------------------------------------------------------------------------

export interface LogRecord {
  readonly offset: number;
  readonly event: PacketEvent;
  /** The epoch of the transaction that committed it. */
  readonly epoch: number;
  readonly transaction: number;
}

interface OpenTransaction {
  readonly epoch: number;
  readonly records: PacketEvent[];
  readonly startedAtMs: number;
  produced: boolean;
}

interface TransactionalId {
  epoch: number;
  open: OpenTransaction | undefined;
  readonly log: LogRecord[];
}

export interface CommitNotice {
  readonly slot: number;
  readonly epoch: number;
  readonly records: readonly LogRecord[];
  /** The partition's end before this transaction's records. */
  readonly offsetBefore: number;
}

export class FakeBroker {
  private readonly slots: TransactionalId[];
  private transactions = 0;
  readonly counts = { inits: 0, commits: 0, aborts: 0, timeoutAborts: 0, staleRejected: 0 };
  /** Called inside EndTxn, as the records become visible to read_committed readers. */
  onCommit: ((notice: CommitNotice) => void) | undefined;

  constructor(
    readonly slotCount: number,
    private readonly nowMs: () => number,
    private readonly trace: (line: string) => void = () => {},
    readonly transactionTimeoutMs = TRANSACTION_TIMEOUT_MS,
  ) {
    this.slots = Array.from({ length: slotCount }, () => ({ epoch: 0, open: undefined, log: [] }));
  }

  epoch(slot: number): number {
    return this.id(slot).epoch;
  }

  /** The read_committed view of the partition: committed records only, in order. */
  log(slot: number): readonly LogRecord[] {
    return this.id(slot).log;
  }

  logEnd(slot: number): number {
    return this.id(slot).log.length;
  }

  hasOpenTransaction(slot: number): boolean {
    return this.id(slot).open !== undefined;
  }

  /** Registers a writer: bumps the epoch, aborting whatever the id's earlier writer left open. */
  initProducerId(slot: number): number {
    const id = this.id(slot);
    this.abortOpen(slot, 'fenced by InitProducerId');
    id.epoch += 1;
    this.counts.inits += 1;
    return id.epoch;
  }

  addPartitionsToTxn(slot: number, epoch: number): void {
    const id = this.current(slot, epoch, 'AddPartitionsToTxn');
    if (id.open === undefined) id.open = { epoch, records: [], startedAtMs: this.nowMs(), produced: false };
    else if (id.open.epoch !== epoch) throw new FakeBrokerInvariantError(`slot ${slot}: open transaction of epoch ${id.open.epoch} under epoch ${epoch}`);
  }

  produce(slot: number, epoch: number, events: readonly PacketEvent[]): void {
    const id = this.current(slot, epoch, 'Produce');
    // KIP-890 part 1: the partition leader verifies the transaction is ongoing for this epoch.
    if (id.open === undefined || id.open.epoch !== epoch) throw invalidTxnStateError(`slot ${slot}: no transaction ongoing for epoch ${epoch}`);
    id.open.records.push(...events);
    id.open.produced = true;
  }

  endTxn(slot: number, epoch: number, commit: boolean): void {
    const id = this.current(slot, epoch, 'EndTxn');
    const open = id.open;
    if (open === undefined || open.epoch !== epoch) throw invalidTxnStateError(`slot ${slot}: no transaction ongoing for epoch ${epoch}`);
    id.open = undefined;
    if (!commit) {
      this.counts.aborts += 1;
      return;
    }
    const offsetBefore = id.log.length;
    const transaction = (this.transactions += 1);
    const records = open.records.map((event, index): LogRecord => ({ offset: offsetBefore + index, event, epoch, transaction }));
    id.log.push(...records);
    this.counts.commits += 1;
    this.onCommit?.({ slot, epoch, records, offsetBefore });
  }

  /** The coordinator's transaction timeout: abort, and bump the epoch so the writer is dead. */
  expireTransactions(): void {
    for (let slot = 0; slot < this.slotCount; slot += 1) {
      const id = this.id(slot);
      if (id.open !== undefined && this.nowMs() - id.open.startedAtMs >= this.transactionTimeoutMs) {
        this.abortOpen(slot, 'transaction timeout');
        id.epoch += 1;
        this.counts.timeoutAborts += 1;
        this.trace(`  broker slot ${slot}: transaction timed out, epoch → ${id.epoch}`);
      }
    }
  }

  private abortOpen(slot: number, why: string): void {
    const id = this.id(slot);
    if (id.open === undefined) return;
    this.trace(`  broker slot ${slot}: aborts the open transaction of epoch ${id.open.epoch} (${id.open.records.length} records; ${why})`);
    id.open = undefined;
    this.counts.aborts += 1;
  }

  private current(slot: number, epoch: number, request: string): TransactionalId {
    const id = this.id(slot);
    if (epoch !== id.epoch) {
      this.counts.staleRejected += 1;
      throw fencedError(`${request} on slot ${slot} with epoch ${epoch}, current ${id.epoch}`);
    }
    return id;
  }

  private id(slot: number): TransactionalId {
    const id = this.slots[slot];
    if (id === undefined) throw new FakeBrokerInvariantError(`no slot ${slot}`);
    return id;
  }
}

// ---- producers ----------------------------------------------------------------------------

export type FakeProducerState = 'new' | 'fencing' | 'ready' | 'committing' | 'dead' | 'closed' | 'discarded';

let producerSerial = 0;

/** One transactional producer object for one slot, as kafka-slot-producer.ts uses kafkajs. */
export class FakeSlotProducer implements SlotProducer {
  readonly serial = (producerSerial += 1);
  state: FakeProducerState = 'new';
  /** The epoch this producer learnt from its InitProducerId answer. */
  epoch: number | undefined;
  /** The epoch the broker gave it, even if the answer never arrived. */
  grantedEpoch: number | undefined;
  /** Where the log stood when this writer's catch-up read it, plus its own commits since (set by the test). */
  readUpTo: number | undefined;
  private abandon: ((error: Error) => void) | undefined;

  constructor(
    private readonly broker: FakeBroker,
    private readonly network: Network,
    readonly host: Host,
    readonly slot: number,
  ) {}

  get name(): string {
    return `${this.host.name}/p${this.serial}`;
  }

  /** Whether this producer could append now: registered, alive, and its epoch still the broker's. */
  get current(): boolean {
    return (this.state === 'ready' || this.state === 'committing') && this.epoch !== undefined && this.epoch === this.broker.epoch(this.slot);
  }

  fence(): Promise<void> {
    return this.operation('fence', 'new', async () => {
      const epoch = await this.call('InitProducerId', () => {
        const granted = this.broker.initProducerId(this.slot);
        this.grantedEpoch = granted;
        return granted;
      });
      this.epoch = epoch;
    });
  }

  commit(events: readonly PacketEvent[]): Promise<void> {
    return this.operation('append', 'ready', async () => {
      const epoch = this.epoch!;
      await this.call('AddPartitionsToTxn', () => this.broker.addPartitionsToTxn(this.slot, epoch));
      await this.call(`Produce(${events.length})`, () => this.broker.produce(this.slot, epoch, events));
      try {
        await this.call('EndTxn(commit)', () => this.broker.endTxn(this.slot, epoch, true));
      } catch (cause) {
        // kafkajs wraps what its retrier gives up on; isFencedError must look through it.
        throw isFencedError(cause) ? new Error('KafkaJSNonRetriableError: commit failed', { cause }) : cause;
      }
    });
  }

  async close(): Promise<void> {
    this.stop('closed');
  }

  discard(): void {
    this.stop('discarded');
  }

  private stop(state: 'closed' | 'discarded'): void {
    if (this.state === 'closed' || this.state === 'discarded') return;
    this.state = state;
    // What is on the wire stays there (the broker may still apply it); the caller hears now.
    this.abandon?.(new Error(`kafka producer ${state}`));
  }

  private call<T>(label: string, apply: () => T): Promise<T> {
    if (this.state === 'closed' || this.state === 'discarded') return Promise.reject(new Error(`kafka producer ${this.state}`));
    return this.network.send(this.host, `${this.name} slot ${this.slot} ${label} e${this.epoch ?? '?'}`, apply);
  }

  /** One call of the SlotProducer interface, bounded by the deadline, as withinDeadline does. */
  private operation(step: string, from: FakeProducerState, work: () => Promise<void>): Promise<void> {
    if (this.state !== from) return Promise.reject(new Error(`kafka producer is ${this.state}, cannot ${step}`));
    this.state = step === 'fence' ? 'fencing' : 'committing';
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error: unknown) => {
        if (settled) return;
        settled = true;
        cancelDeadline();
        this.abandon = undefined;
        if (error === undefined) {
          if (this.state === 'fencing' || this.state === 'committing') this.state = 'ready';
          resolve();
        } else {
          if (this.state === 'fencing' || this.state === 'committing') this.state = 'dead';
          reject(error);
        }
      };
      const cancelDeadline = this.host.setTimeout(() => {
        this.discard();
        settle(new Error(`kafka ${step} on slot ${this.slot} not done within ${APPEND_DEADLINE_MS} ms`));
      }, APPEND_DEADLINE_MS);
      this.abandon = (error) => settle(error);
      work().then(
        () => settle(undefined),
        (error: unknown) => settle(error),
      );
    });
  }
}

/** The SlotProducerFactory of one process over the fake broker; onCreate sees every producer made. */
export function fakeSlotProducers(broker: FakeBroker, network: Network, host: Host, onCreate: (producer: FakeSlotProducer) => void): SlotProducerFactory {
  return {
    create: (slot) => {
      const producer = new FakeSlotProducer(broker, network, host, slot);
      onCreate(producer);
      return producer;
    },
    isFenced: isFencedError,
  };
}
