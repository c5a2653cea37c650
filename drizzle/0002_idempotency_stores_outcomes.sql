-- Idempotency records keep the use case's domain value, not an HTTP response: rewrite the
-- rows written before (a send's rendered packet, a deposit's rendered balance) into that form.
UPDATE "idempotency_keys" AS k SET "response" = jsonb_build_object(
  'id', p.id, 'type', p.type, 'senderId', p.sender_id, 'targetId', p.target_id, 'count', p.count,
  'totalFen', p.total_fen, 'greeting', p.greeting, 'members', p.members,
  'createdAtMs', (extract(epoch from p.created_at) * 1000)::bigint,
  'liveAtMs', (extract(epoch from p.live_at) * 1000)::bigint,
  'expiresAtMs', (extract(epoch from p.expires_at) * 1000)::bigint)
FROM "packets" AS p
WHERE k.route = 'POST /v1/packets' AND k.response ? 'packet' AND p.id = k.response->'packet'->>'id';--> statement-breakpoint
UPDATE "idempotency_keys" SET "response" = jsonb_build_object(
  'userId', response->>'userId', 'balanceFen', round((response->>'balance')::numeric * 100)::bigint)
WHERE route = 'POST /v1/wallet/deposits' AND response ? 'balance';--> statement-breakpoint
-- Scopes name the use case, not an HTTP route.
UPDATE "idempotency_keys" SET "route" = 'send' WHERE route = 'POST /v1/packets';--> statement-breakpoint
UPDATE "idempotency_keys" SET "route" = 'deposit' WHERE route = 'POST /v1/wallet/deposits';--> statement-breakpoint
ALTER TABLE "idempotency_keys" DROP COLUMN "status_code";
