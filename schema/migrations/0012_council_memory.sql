CREATE TABLE "council_votes" (
	"id" text PRIMARY KEY NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"tenant_id" text NOT NULL,
	"environment_id" text NOT NULL,
	"api_key_id" text NOT NULL,
	"council" text NOT NULL,
	"question" text NOT NULL,
	"responses" jsonb NOT NULL,
	"failures" jsonb NOT NULL,
	"consensus" text,
	"concerns" jsonb NOT NULL,
	"recommendation" text NOT NULL,
	"confidence" integer NOT NULL,
	"audit_hash" text NOT NULL,
	"partial" boolean NOT NULL,
	"usage" jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "councils" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"name" text NOT NULL,
	"specialists" jsonb NOT NULL,
	"synthesiser" text NOT NULL,
	"deadline_ms" integer DEFAULT 30000 NOT NULL,
	"critical_tags" text[] DEFAULT ARRAY['SECURITY CONCERN','7GEN CONCERN']::text[] NOT NULL,
	"leave_breadcrumbs" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "memory_breadcrumbs" (
	"id" text PRIMARY KEY NOT NULL,
	"trail_id" text NOT NULL,
	"tenant_id" text NOT NULL,
	"content" text NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "memory_trails" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"source" text NOT NULL,
	"target" text DEFAULT '' NOT NULL,
	"temperature" double precision NOT NULL,
	"temperature_at" timestamp with time zone NOT NULL,
	"breadcrumbs" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "usage_records" ADD COLUMN "vote_id" text;--> statement-breakpoint
ALTER TABLE "councils" ADD CONSTRAINT "councils_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "memory_breadcrumbs" ADD CONSTRAINT "memory_breadcrumbs_trail_id_memory_trails_id_fk" FOREIGN KEY ("trail_id") REFERENCES "public"."memory_trails"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "memory_trails" ADD CONSTRAINT "memory_trails_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "council_votes_tenant_at_idx" ON "council_votes" USING btree ("tenant_id","at");--> statement-breakpoint
CREATE UNIQUE INDEX "councils_tenant_name_idx" ON "councils" USING btree ("tenant_id","name");--> statement-breakpoint
CREATE INDEX "memory_breadcrumbs_trail_at_idx" ON "memory_breadcrumbs" USING btree ("trail_id","at");--> statement-breakpoint
CREATE UNIQUE INDEX "memory_trails_tenant_source_target_idx" ON "memory_trails" USING btree ("tenant_id","source","target");--> statement-breakpoint
CREATE INDEX "memory_trails_tenant_temperature_idx" ON "memory_trails" USING btree ("tenant_id","temperature");