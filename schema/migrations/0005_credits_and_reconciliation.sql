CREATE TABLE "credit_grants" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"kind" text NOT NULL,
	"amount_micros" bigint NOT NULL,
	"remaining_micros" bigint NOT NULL,
	"expires_at" timestamp with time zone,
	"note" text DEFAULT '' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "node_token_counters" (
	"node_id" text PRIMARY KEY NOT NULL,
	"sampled_at" timestamp with time zone NOT NULL,
	"engines" jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "reconciliations" (
	"id" text PRIMARY KEY NOT NULL,
	"node_id" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"window_end" timestamp with time zone NOT NULL,
	"engine_prompt_tokens" bigint NOT NULL,
	"engine_generation_tokens" bigint NOT NULL,
	"metered_prompt_tokens" bigint NOT NULL,
	"metered_completion_tokens" bigint NOT NULL,
	"drift_prompt_tokens" bigint NOT NULL,
	"drift_generation_tokens" bigint NOT NULL,
	"drift_ratio" double precision NOT NULL,
	"alert" boolean NOT NULL,
	"engine_restarted" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "usage_hourly" ADD COLUMN "credit_micros" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_records" ADD COLUMN "credit_micros" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "credit_grants" ADD CONSTRAINT "credit_grants_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "credit_grants_tenant_idx" ON "credit_grants" USING btree ("tenant_id","expires_at");--> statement-breakpoint
CREATE INDEX "reconciliations_node_idx" ON "reconciliations" USING btree ("node_id","window_end");--> statement-breakpoint
CREATE INDEX "reconciliations_alert_idx" ON "reconciliations" USING btree ("alert","window_end");