CREATE TABLE "payment_nonces" (
	"provider" text NOT NULL,
	"nonce" text NOT NULL,
	"seen_at" timestamp with time zone NOT NULL,
	CONSTRAINT "payment_nonces_provider_nonce_pk" PRIMARY KEY("provider","nonce")
);
--> statement-breakpoint
CREATE TABLE "payment_orders" (
	"order_id" text PRIMARY KEY NOT NULL,
	"provider" text NOT NULL,
	"packet_id" text NOT NULL,
	"amount_fen" bigint NOT NULL,
	"pay_token" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"status" text DEFAULT 'created' NOT NULL,
	"paid_at" timestamp with time zone,
	"closed_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "payment_orders_packet_id_unique" UNIQUE("packet_id")
);
--> statement-breakpoint
ALTER TABLE "claims" ADD COLUMN "credited" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "packets" ADD COLUMN "pay_with" text DEFAULT 'balance' NOT NULL;--> statement-breakpoint
ALTER TABLE "packets" ADD COLUMN "order_id" text;--> statement-breakpoint
ALTER TABLE "packets" ADD COLUMN "funded_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "packets" ADD COLUMN "reswept_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "payment_nonces_seen_idx" ON "payment_nonces" USING btree ("seen_at");--> statement-breakpoint
CREATE INDEX "claims_held_idx" ON "claims" USING btree ("user_id") WHERE not credited;--> statement-breakpoint
CREATE INDEX "packets_payment_due_idx" ON "packets" USING btree ("created_at") WHERE status in ('pending_payment', 'awaiting_funds');--> statement-breakpoint
CREATE INDEX "packets_resweep_idx" ON "packets" USING btree ("funded_at") WHERE funded_at is not null and reswept_at is null;