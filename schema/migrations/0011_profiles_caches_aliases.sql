CREATE TABLE "stream_profiles" (
	"name" text PRIMARY KEY NOT NULL,
	"chunk_tokens" integer NOT NULL,
	"timeout_ms" integer NOT NULL,
	"buffer_tokens" integer NOT NULL,
	"interval_ms" integer NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "environments" ADD COLUMN "cache_enabled" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "models" ADD COLUMN "aliases" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "models" ADD COLUMN "cache_hit_price_factor" numeric(6, 4) DEFAULT '0' NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_hourly" ADD COLUMN "cache_hits" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_records" ADD COLUMN "stream_profile" text;--> statement-breakpoint
ALTER TABLE "usage_records" ADD COLUMN "cache_hit" boolean DEFAULT false NOT NULL;