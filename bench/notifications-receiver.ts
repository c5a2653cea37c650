// The webhook receiver of the notifications scenario (bench/scenarios/notifications.ts), a process
// of its own so that it shares no event loop with the load generator: node:http on 127.0.0.1,
// answering 200 to every POST once its body has arrived. For each delivery it records when the
// body had fully arrived (performance.timeOrigin + performance.now(), the clock the load generator
// uses for its acknowledgements), the event's id, type, packetId, seq, userId and amount, and
// whether the Hongbao-Signature header is the webhook secret's over this body. Talks to its parent
// over IPC:
//   → {type: 'listening', port}                       once it listens
//   ← {type: 'secret', secret}                        the webhook's secret, before any delivery
//   ← {type: 'ping', id} → {type: 'pong', id, nowMs}   for the clock offset between the processes
//   ← {type: 'take', from} → {type: 'records', from, records, total}  the records from index `from`
//   ← {type: 'stats'} → {type: 'stats', cpuMs, requests, badSignatures, unparsed}
//   node --import tsx bench/notifications-receiver.ts
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SIGNATURE_HEADER, verifyWebhook } from '../src/notify/signature.js';

/** One delivery: [eventId, type, packetId, seq, userId, amount, arrivalMs, signatureOk (1/0)]. */
export type DeliveryRecord = [string, string, string, number, string, string, number, number];

const nowMs = () => performance.timeOrigin + performance.now();
const records: DeliveryRecord[] = [];
const header = SIGNATURE_HEADER.toLowerCase();
let secret: string | undefined;
let requests = 0;
let badSignatures = 0;
let unparsed = 0;
const cpuStart = process.cpuUsage();

const server = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const arrivalMs = nowMs();
    requests += 1;
    const body = Buffer.concat(chunks).toString('utf8');
    const signature = request.headers[header];
    const ok = secret !== undefined && typeof signature === 'string' && verifyWebhook(secret, body, signature, Date.now());
    if (!ok) badSignatures += 1;
    try {
      const event = JSON.parse(body) as { id: string; type: string; data: { packetId?: string; seq?: number; userId?: string; amount?: string } };
      records.push([event.id, event.type, event.data.packetId ?? '', event.data.seq ?? -1, event.data.userId ?? '', event.data.amount ?? '', arrivalMs, ok ? 1 : 0]);
    } catch {
      unparsed += 1;
    }
    response.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }).end('ok');
  });
});
server.keepAliveTimeout = 60_000;

process.on('message', (message: any) => {
  switch (message?.type) {
    case 'secret':
      secret = message.secret;
      break;
    case 'ping':
      process.send!({ type: 'pong', id: message.id, nowMs: nowMs() });
      break;
    case 'take': {
      const from = Number(message.from) || 0;
      process.send!({ type: 'records', from, records: records.slice(from), total: records.length });
      break;
    }
    case 'stats': {
      const cpu = process.cpuUsage(cpuStart);
      process.send!({ type: 'stats', cpuMs: (cpu.user + cpu.system) / 1000, requests, badSignatures, unparsed });
      break;
    }
  }
});
// The parent gone: nothing left to receive for.
process.on('disconnect', () => process.exit(0));

server.listen(0, '127.0.0.1', () => process.send!({ type: 'listening', port: (server.address() as AddressInfo).port }));
