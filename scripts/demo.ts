// npm run demo: a group of 200 users grabs a 100-share lucky packet on the running engine,
// then prints the result page and the best luck. Start the server first (npm start).
// npm run demo -- --pay sandbox: the packet is paid through the sandbox provider instead: the
// sender pays on its payment sheet, forwards the return, the group opens while the funds are
// awaited (the claims are held), and the provider's notification, 3 s later, credits them all.
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../src/config.js';
import { issueToken } from '../src/http/auth.js';

const baseUrl = process.env.HONGBAO_URL ?? `http://127.0.0.1:${process.env.PORT ?? 3000}`;
const config = loadConfig();
const secret = config.authSecret;
const payWith = process.argv.includes('--pay') ? process.argv[process.argv.indexOf('--pay') + 1] : 'balance';
if (payWith !== 'balance' && payWith !== 'sandbox') {
  console.error(`--pay takes balance or sandbox, not ${payWith}`);
  process.exit(2);
}
const sandboxUrl = config.sandbox.url ?? `${baseUrl}/sandbox`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const run = randomUUID().slice(0, 8);

async function call(userId: string, method: string, path: string, body?: unknown, admin = false) {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${await issueToken(secret, userId, { admin })}`,
      'content-type': 'application/json',
      'idempotency-key': `demo-${run}-${path}`,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await response.json()) as any;
  if (response.status >= 400) throw new Error(`${method} ${path} → ${response.status} ${JSON.stringify(json)}`);
  return json;
}

try {
  await fetch(`${baseUrl}/healthz`);
} catch {
  console.error(`no server at ${baseUrl}: start it with \`npm start\` (or set HONGBAO_URL)`);
  process.exit(1);
}

const sender = `boss-${run}`;
if (payWith === 'balance') await call('demo-admin', 'POST', '/v1/wallet/deposits', { userId: sender, amount: '500.00' }, true);
const sent = await call(sender, 'POST', '/v1/packets', {
  type: 'group_lucky', targetId: `family-${run}`, count: 100, amount: '200.00', greeting: '新年快乐,大吉大利', payWith,
});
const packet = sent.packet;
console.log(`${sender} sent ${packet.count} lucky shares of ${packet.total} yuan to ${packet.targetId} (packet ${packet.id}, ${packet.status})`);
if (payWith === 'sandbox') {
  // The payer's app on the provider's payment sheet; the notification to the server comes 3 s later.
  const sheet = await fetch(`${sandboxUrl}/v1/pay`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ orderId: sent.payment.orderId, payToken: sent.payment.payToken, outcome: 'success', notify: 'delayed' }),
  });
  const { returnPayload } = (await sheet.json()) as { returnPayload: string };
  if (sheet.status !== 200) throw new Error(`the sandbox at ${sandboxUrl} refused the payment (${sheet.status})`);
  const returned = await call(sender, 'POST', `/v1/packets/${packet.id}/payment/return`, { returnPayload });
  console.log(`paid order ${sent.payment.orderId} in the sandbox; the return says success: the packet is ${returned.packet.status} (等待到账)`);
}

const members = Array.from({ length: 200 }, (_, index) => `member-${run}-${index}`);
const started = performance.now();
const outcomes = await Promise.all(
  members.map(async (userId) => {
    const grab = await call(userId, 'POST', `/v1/packets/${packet.id}/grab`);
    if (grab.state !== 'openable') return grab.state as string; // turned away before the serialized path
    return (await call(userId, 'POST', `/v1/packets/${packet.id}/open`)).state as string;
  }),
);
const elapsedMs = performance.now() - started;
const tally = outcomes.reduce<Record<string, number>>((counts, state) => ({ ...counts, [state]: (counts[state] ?? 0) + 1 }), {});
console.log(`200 members grabbed and opened in ${elapsedMs.toFixed(0)} ms:`, tally);

if (payWith === 'sandbox') {
  const held = await call(sender, 'GET', `/v1/packets/${packet.id}`);
  const first = await call(members[0]!, 'GET', '/v1/wallet');
  console.log(`while awaiting funds: ${held.claims.filter((claim: any) => !claim.credited).length} claims held; ${members[0]} has balance ${first.balance}, pending ${first.pending}`);
  const deadline = Date.now() + 30_000;
  while ((await call(sender, 'GET', `/v1/packets/${packet.id}`)).packet.status === 'awaiting_funds') {
    if (Date.now() > deadline) throw new Error('no notification from the sandbox within 30 s');
    await sleep(250);
  }
  await sleep(300); // the ledger books the funding and credits the held claims asynchronously (入账异步)
  const after = await call(members[0]!, 'GET', '/v1/wallet');
  console.log(`the provider's notification arrived: the packet is funded; ${members[0]} now has balance ${after.balance}, pending ${after.pending}`);
}

const page = await call(sender, 'GET', `/v1/packets/${packet.id}`);
console.log(`\nresult page (sender's view): ${page.summary}`);
const best = page.claims.find((claim: any) => claim.best);
console.log(`手气最佳 (best luck): ${best.userId} with ${best.amount} yuan`);
console.log('newest five claims:', page.claims.slice(0, 5).map((claim: any) => `${claim.userId} ${claim.amount}`).join(', '));
const member = await call(members[0]!, 'GET', `/v1/packets/${packet.id}`);
console.log(`a member's view: ${member.summary}${member.myAmount ? `, got ${member.myAmount} — ${member.notice}` : ''}`);
