// What the dispatcher's unit tests run on: an in-memory NotificationStorePort with the leasing
// rules of src/ledger/notifications.ts (due, not leased, the earliest pending of its packet per
// endpoint, at most `perWebhookMax` leased per endpoint), which records every completion; and a
// scriptable HTTP endpoint that counts what it is sent and what it holds at once.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CompletedDelivery, DeliveryOutcome, LeasedDelivery, StoredWebhook, StreamedEvent } from '../../src/ledger/notifications.js';
import type { NotificationStorePort } from '../../src/notify/store-port.js';

export interface FakeDelivery {
  readonly webhookId: string;
  readonly eventSeq: number;
  readonly packetId: string;
  readonly eventId: string;
  readonly createdAtMs: number;
  state: 'pending' | 'delivered' | 'dead';
  attempts: number;
  nextAttemptAtMs: number;
  leasedUntilMs: number | null;
  /** Every completion: when (the dispatcher's clock) and what. */
  readonly completions: { atMs: number; outcome: DeliveryOutcome }[];
}

export class FakeNotificationStore implements NotificationStorePort {
  readonly webhooksById = new Map<string, StoredWebhook>();
  readonly deliveries: FakeDelivery[] = [];
  leases = 0;
  /** The size of each batch of outcomes recorded. */
  readonly completionBatches: number[] = [];
  private seq = 0;

  addWebhook(id: string, url: string): void {
    this.webhooksById.set(id, { id, url, events: null, secret: `whsec_${id}`, createdAtMs: 0 });
  }

  /** One pending delivery of a new event to this endpoint, due at `atMs`. */
  schedule(webhookId: string, packetId: string, atMs: number, eventId = `evt_${packetId}_${this.seq + 1}`): FakeDelivery {
    const delivery: FakeDelivery = {
      webhookId,
      eventSeq: ++this.seq,
      packetId,
      eventId,
      createdAtMs: atMs,
      state: 'pending',
      attempts: 0,
      nextAttemptAtMs: atMs,
      leasedUntilMs: null,
      completions: [],
    };
    this.deliveries.push(delivery);
    return delivery;
  }

  of(webhookId: string): FakeDelivery[] {
    return this.deliveries.filter((delivery) => delivery.webhookId === webhookId);
  }

  async createWebhook(webhook: Omit<StoredWebhook, 'createdAtMs'>): Promise<StoredWebhook> {
    const stored = { ...webhook, createdAtMs: 0 };
    this.webhooksById.set(webhook.id, stored);
    return stored;
  }

  async listWebhooks(): Promise<StoredWebhook[]> {
    return [...this.webhooksById.values()];
  }

  async deleteWebhook(id: string): Promise<boolean> {
    return this.webhooksById.delete(id);
  }

  async leaseDeliveries(nowMs: number, limit: number, perWebhookMax: number, leaseMs: number): Promise<LeasedDelivery[]> {
    this.leases += 1;
    const leased = (delivery: FakeDelivery) => delivery.leasedUntilMs !== null && delivery.leasedUntilMs > nowMs;
    const busy = new Map<string, number>();
    for (const delivery of this.deliveries) if (delivery.state === 'pending' && leased(delivery)) busy.set(delivery.webhookId, (busy.get(delivery.webhookId) ?? 0) + 1);
    const taken: FakeDelivery[] = [];
    for (const delivery of [...this.deliveries].sort((a, b) => a.eventSeq - b.eventSeq)) {
      if (taken.length >= limit) break;
      if (delivery.state !== 'pending' || delivery.nextAttemptAtMs > nowMs || leased(delivery)) continue;
      const earlier = this.deliveries.some(
        (other) => other.webhookId === delivery.webhookId && other.packetId === delivery.packetId && other.state === 'pending' && other.eventSeq < delivery.eventSeq,
      );
      if (earlier) continue;
      if ((busy.get(delivery.webhookId) ?? 0) >= perWebhookMax) continue;
      busy.set(delivery.webhookId, (busy.get(delivery.webhookId) ?? 0) + 1);
      delivery.leasedUntilMs = nowMs + leaseMs;
      taken.push(delivery);
    }
    return taken.map((delivery) => {
      const webhook = this.webhooksById.get(delivery.webhookId)!;
      return {
        webhookId: delivery.webhookId,
        url: webhook.url,
        secret: webhook.secret,
        eventSeq: delivery.eventSeq,
        attempts: delivery.attempts,
        firstAttemptAtMs: delivery.createdAtMs,
        event: { id: delivery.eventId, type: 'packet.opened', createdAt: new Date(delivery.createdAtMs).toISOString(), data: { packetId: delivery.packetId, seq: delivery.eventSeq } },
        eventAtMs: delivery.createdAtMs,
      };
    });
  }

  async completeDeliveries(completed: readonly CompletedDelivery[], nowMs: number): Promise<void> {
    this.completionBatches.push(completed.length);
    for (const { webhookId, eventSeq, outcome } of completed) {
      const delivery = this.deliveries.find((entry) => entry.webhookId === webhookId && entry.eventSeq === eventSeq);
      if (delivery === undefined || delivery.state !== 'pending') continue;
      delivery.completions.push({ atMs: nowMs, outcome });
      delivery.attempts += 1;
      delivery.leasedUntilMs = null;
      if (outcome.kind === 'delivered') delivery.state = 'delivered';
      else if (outcome.kind === 'dead') delivery.state = 'dead';
      else delivery.nextAttemptAtMs = outcome.nextAttemptAtMs;
    }
  }

  async retriesPending(): Promise<number> {
    return this.deliveries.filter((delivery) => delivery.state === 'pending' && delivery.attempts > 0).length;
  }

  async eventsFor(): Promise<StreamedEvent[]> {
    return [];
  }

  async seqOfEvent(): Promise<number | null> {
    return null;
  }

  async lastSeqFor(): Promise<number> {
    return 0;
  }

  async pruneNotifications(): Promise<number> {
    return 0;
  }
}

export interface ScriptedEndpoint {
  readonly url: string;
  /** Every request, in arrival order: the body's event id, its signature, when it came, what it was answered. */
  readonly requests: { eventId: string; body: string; signature: string | undefined; atMs: number; status: number | 'held' }[];
  readonly inFlight: number;
  readonly maxInFlight: number;
  close(): Promise<void>;
}

/**
 * An endpoint that answers each request as `answer` says: a status now, or after `delayMs`, or
 * never (`held`: the connection stays open until the endpoint closes).
 */
export async function scriptedEndpoint(answer: (requestIndex: number) => { status: number; delayMs?: number } | 'held'): Promise<ScriptedEndpoint> {
  const requests: ScriptedEndpoint['requests'] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const read = (request: IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      request.on('error', reject);
    });
  const server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    response.on('close', () => (inFlight -= 1));
    const body = await read(request);
    const plan = answer(requests.length);
    const entry = { eventId: (JSON.parse(body) as { id: string }).id, body, signature: request.headers['hongbao-signature'] as string | undefined, atMs: Date.now(), status: plan === 'held' ? ('held' as const) : plan.status };
    requests.push(entry);
    if (plan === 'held') return;
    if (plan.delayMs) await new Promise((resolve) => setTimeout(resolve, plan.delayMs));
    response.writeHead(plan.status).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    requests,
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Polls until `ok` holds, or fails naming what was awaited. */
export async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000, stepMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
}
