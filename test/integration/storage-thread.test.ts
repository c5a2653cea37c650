// The storage thread (src/app/storage-thread.ts) owns the database and runs the ledger: if it dies,
// nothing more can be booked or read, so the process stops serving (fail-stop) instead of answering
// opens it could not make durable. The fault is injected by terminating the real worker thread.
import { afterEach, describe, expect, it } from 'vitest';
import { apiClient } from '../support/http-client.js';
import { startHarness, type Harness } from '../support/harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.stop().catch(() => {});
  h = undefined;
});

describe('the storage thread', () => {
  it('answers through the main thread while it lives; once it dies, every request and /readyz answer 503 and no open is claimed', async () => {
    h = await startHarness();
    const client = apiClient(() => h!, 'storage');
    await client.fund('st-sender', '10.00');
    const packet = await client.sendOk('st-sender', { type: 'group_fixed', targetId: 'g', count: 4, amount: '1.00' });
    await client.openOk(packet.id, 'st-a');
    await h.settle();
    expect(await client.balance('st-a')).toBe('1.00');
    await client.expectConserved(); // through the thread: Σ balances + live escrow = deposits

    const exited = new Promise<number>((resolve) => h!.hongbao.storage.worker.once('exit', resolve));
    await h.hongbao.storage.worker.terminate();
    expect(await exited).toBe(1); // terminated, not a clean end: the fault happened

    expect(h.hongbao.service.serving).toBe(false);
    const ready = await h.call('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(JSON.stringify(ready.body)).toContain('storage thread');
    const open = await h.call('POST', `/v1/packets/${packet.id}/open`, { user: 'st-b' });
    expect(open.status).toBe(503);
    expect((await h.call('GET', '/v1/wallet', { user: 'st-a' })).status).toBe(503);
    // A call that reaches the dead thread anyway is an UnavailableError (503), never a hang.
    await expect(h.hongbao.ledger.wallet('st-a')).rejects.toMatchObject({ name: 'UnavailableError' });
  });
});
