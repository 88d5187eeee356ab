CREATE TABLE "usage_hourly" (
	"hour" timestamp with time zone NOT NULL,
	"tenant_id" text NOT NULL,
	"environment_id" text NOT NULL,
	"api_key_id" text NOT NULL,
	"model" text NOT NULL,
	"requests" integer DEFAULT 0 NOT NULL,
	"prompt_tokens" bigint DEFAULT 0 NOT NULL,
	"completion_tokens" bigint DEFAULT 0 NOT NULL,
	"cached_prompt_tokens" bigint DEFAULT 0 NOT NULL,
	"cost_micros" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "usage_hourly_hour_tenant_id_environment_id_api_key_id_model_pk" PRIMARY KEY("hour","tenant_id","environment_id","api_key_id","model")
);
--> statement-breakpoint
CREATE INDEX "usage_hourly_tenant_hour_idx" ON "usage_hourly" USING btree ("tenant_id","hour");