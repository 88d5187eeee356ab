CREATE TABLE "conversations" (
	"id" text PRIMARY KEY NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone NOT NULL,
	"tenant_id" text NOT NULL,
	"environment_id" text NOT NULL,
	"api_key_id" text NOT NULL,
	"mode" text NOT NULL,
	"endpoint" text NOT NULL,
	"model" text NOT NULL,
	"node_id" text,
	"status" text NOT NULL,
	"http_status" integer NOT NULL,
	"streamed" boolean NOT NULL,
	"prompt_tokens" integer DEFAULT 0 NOT NULL,
	"completion_tokens" integer DEFAULT 0 NOT NULL,
	"request_body" text,
	"request_truncated" boolean DEFAULT false NOT NULL,
	"response_body" text,
	"response_truncated" boolean DEFAULT false NOT NULL
);
--> statement-breakpoint
ALTER TABLE "environments" ADD COLUMN "audit_mode" text DEFAULT 'off' NOT NULL;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "audit_redactions" text[];--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "audit_retention_days" integer;--> statement-breakpoint
CREATE INDEX "conversations_tenant_at_idx" ON "conversations" USING btree ("tenant_id","at");--> statement-breakpoint
CREATE INDEX "conversations_at_idx" ON "conversations" USING btree ("at");