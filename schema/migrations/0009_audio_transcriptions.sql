ALTER TABLE "models" ADD COLUMN "audio_price_per_minute" numeric(12, 6);--> statement-breakpoint
ALTER TABLE "usage_hourly" ADD COLUMN "audio_ms" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_records" ADD COLUMN "audio_ms" integer DEFAULT 0 NOT NULL;