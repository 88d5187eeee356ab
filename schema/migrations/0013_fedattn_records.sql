CREATE TABLE "fedattn_contributions" (
	"id" text PRIMARY KEY NOT NULL,
	"session_id" text NOT NULL,
	"participant" text NOT NULL,
	"block_start" integer NOT NULL,
	"block_end" integer NOT NULL,
	"size_bytes" bigint NOT NULL,
	"dtype" text NOT NULL,
	"latency_ms" integer NOT NULL,
	"weight" double precision NOT NULL,
	"at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "fedattn_sessions" (
	"id" text PRIMARY KEY NOT NULL,
	"initiator" text NOT NULL,
	"participants" text[] NOT NULL,
	"departed" text[] DEFAULT '{}' NOT NULL,
	"sync_interval" integer NOT NULL,
	"privacy_mode" boolean NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"total_syncs" integer DEFAULT 0 NOT NULL,
	"average_sync_latency_ms" double precision,
	"status" text NOT NULL,
	"version" integer NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "fedattn_contributions_session_idx" ON "fedattn_contributions" USING btree ("session_id","at");--> statement-breakpoint
CREATE INDEX "fedattn_sessions_started_idx" ON "fedattn_sessions" USING btree ("started_at");