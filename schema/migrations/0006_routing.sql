CREATE TABLE "capacity_reservations" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"model" text NOT NULL,
	"tokens_per_second" integer NOT NULL,
	"node_ids" text[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "health_checks" (
	"id" text PRIMARY KEY NOT NULL,
	"node_id" text NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"status" text NOT NULL,
	"previous_status" text,
	"detail" jsonb DEFAULT '{}'::jsonb NOT NULL
);
--> statement-breakpoint
ALTER TABLE "environments" ADD COLUMN "routing_strategy" text;--> statement-breakpoint
ALTER TABLE "environments" ADD COLUMN "region_overrides" text[];--> statement-breakpoint
ALTER TABLE "models" ADD COLUMN "routing_strategy" text;--> statement-breakpoint
CREATE INDEX "capacity_reservations_tenant_idx" ON "capacity_reservations" USING btree ("tenant_id","model");--> statement-breakpoint
CREATE INDEX "health_checks_node_idx" ON "health_checks" USING btree ("node_id","at");