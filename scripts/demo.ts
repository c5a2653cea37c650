// npm run demo: a group of 200 users grabs a 100-share lucky packet on the running engine,
// then prints the result page and the best luck. Start the server first (npm start).
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../src/config.js';
import { issueToken } from '../src/http/auth.js';

const baseUrl = process.env.HONGBAO_URL ?? `http://127.0.0.1:${process.env.PORT ?? 3000}`;
const secret = loadConfig().authSecret;
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
await call('demo-admin', 'POST', '/v1/wallet/deposits', { userId: sender, amount: '500.00' }, true);
const { packet } = await call(sender, 'POST', '/v1/packets', {
  type: 'group_lucky', targetId: `family-${run}`, count: 100, amount: '200.00', greeting: '新年快乐,大吉大利',
});
console.log(`${sender} sent ${packet.count} lucky shares of ${packet.total} yuan to ${packet.targetId} (packet ${packet.id})`);

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

const page = await call(sender, 'GET', `/v1/packets/${packet.id}`);
console.log(`\nresult page (sender's view): ${page.summary}`);
const best = page.claims.find((claim: any) => claim.best);
console.log(`手气最佳 (best luck): ${best.userId} with ${best.amount} yuan`);
console.log('newest five claims:', page.claims.slice(0, 5).map((claim: any) => `${claim.userId} ${claim.amount}`).join(', '));
const member = await call(members[0]!, 'GET', `/v1/packets/${packet.id}`);
console.log(`a member's view: ${member.summary}${member.myAmount ? `, got ${member.myAmount} — ${member.notice}` : ''}`);
