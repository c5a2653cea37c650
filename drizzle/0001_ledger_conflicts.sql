CREATE TABLE "ledger_conflicts" (
	"id" text PRIMARY KEY NOT NULL,
	"code" text NOT NULL,
	"transfer_id" text NOT NULL,
	"packet_id" text,
	"expected" jsonb NOT NULL,
	"stored" jsonb NOT NULL,
	"message" text NOT NULL,
	"recorded_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "ledger_conflicts_packet_idx" ON "ledger_conflicts" USING btree ("packet_id");