CREATE TABLE "accounts" (
	"id" text PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"balance_fen" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "claims" (
	"packet_id" text NOT NULL,
	"seq" integer NOT NULL,
	"user_id" text NOT NULL,
	"amount_fen" bigint NOT NULL,
	"claimed_at" timestamp with time zone NOT NULL,
	CONSTRAINT "claims_packet_id_seq_pk" PRIMARY KEY("packet_id","seq")
);
--> statement-breakpoint
CREATE TABLE "idempotency_keys" (
	"user_id" text NOT NULL,
	"route" text NOT NULL,
	"key" text NOT NULL,
	"request_hash" text NOT NULL,
	"status_code" integer NOT NULL,
	"response" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "idempotency_keys_user_id_route_key_pk" PRIMARY KEY("user_id","route","key")
);
--> statement-breakpoint
CREATE TABLE "log_events" (
	"seq" bigserial PRIMARY KEY NOT NULL,
	"packet_id" text NOT NULL,
	"event" jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "log_positions" (
	"log" text NOT NULL,
	"partition" integer NOT NULL,
	"next_offset" bigint NOT NULL,
	CONSTRAINT "log_positions_log_partition_pk" PRIMARY KEY("log","partition")
);
--> statement-breakpoint
CREATE TABLE "packets" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"sender_id" text NOT NULL,
	"target_id" text NOT NULL,
	"count" integer NOT NULL,
	"total_fen" bigint NOT NULL,
	"greeting" text NOT NULL,
	"members" jsonb,
	"status" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"live_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"claimed_count" integer DEFAULT 0 NOT NULL,
	"claimed_fen" bigint DEFAULT 0 NOT NULL,
	"refund_fen" bigint,
	"finished_at" timestamp with time zone,
	"best_seq" integer
);
--> statement-breakpoint
CREATE TABLE "transfers" (
	"id" text PRIMARY KEY NOT NULL,
	"debit_account_id" text NOT NULL,
	"credit_account_id" text NOT NULL,
	"amount_fen" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "claims_packet_user_idx" ON "claims" USING btree ("packet_id","user_id");--> statement-breakpoint
CREATE INDEX "claims_user_idx" ON "claims" USING btree ("user_id","claimed_at");--> statement-breakpoint
CREATE INDEX "packets_sender_idx" ON "packets" USING btree ("sender_id","created_at");--> statement-breakpoint
CREATE INDEX "packets_live_expiry_idx" ON "packets" USING btree ("expires_at") WHERE status = 'live';--> statement-breakpoint
CREATE INDEX "transfers_debit_idx" ON "transfers" USING btree ("debit_account_id");--> statement-breakpoint
CREATE INDEX "transfers_credit_idx" ON "transfers" USING btree ("credit_account_id");