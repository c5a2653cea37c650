// What the main thread uses of the notification tables (the storage thread runs the SQL): the
// webhooks, the delivery schedule, and the users' streams. See src/ledger/notifications.ts.
import type { CompletedDelivery, LeasedDelivery, StoredWebhook, StreamedEvent } from '../ledger/notifications.js';

export interface NotificationStorePort {
  createWebhook(webhook: Omit<StoredWebhook, 'createdAtMs'>): Promise<StoredWebhook>;
  listWebhooks(): Promise<StoredWebhook[]>;
  deleteWebhook(id: string): Promise<boolean>;
  leaseDeliveries(nowMs: number, limit: number, perWebhookMax: number, leaseMs: number): Promise<LeasedDelivery[]>;
  completeDeliveries(completed: readonly CompletedDelivery[], nowMs: number): Promise<void>;
  retriesPending(): Promise<number>;
  eventsFor(userId: string, afterSeq: number, limit: number): Promise<StreamedEvent[]>;
  seqOfEvent(userId: string, eventId: string): Promise<number | null>;
  lastSeqFor(userId: string): Promise<number>;
  pruneNotifications(nowMs: number): Promise<number>;
}
