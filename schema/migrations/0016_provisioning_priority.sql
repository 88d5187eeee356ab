CREATE TABLE "autoscaling_decisions" (
	"id" text PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"model" text NOT NULL,
	"region" text NOT NULL,
	"action" text NOT NULL,
	"reason" text NOT NULL,
	"node_id" text,
	"launch_id" text,
	"dry_run" boolean NOT NULL,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "autoscaling_policies" (
	"model" text NOT NULL,
	"region" text NOT NULL,
	"min_nodes" integer DEFAULT 0 NOT NULL,
	"max_nodes" integer NOT NULL,
	"target_queue_per_node" real NOT NULL,
	"scale_up_after_seconds" integer DEFAULT 120 NOT NULL,
	"idle_seconds" integer DEFAULT 900 NOT NULL,
	"provider" text NOT NULL,
	"gpu" text NOT NULL,
	"spot" boolean DEFAULT false NOT NULL,
	"mode" text DEFAULT 'dry_run' NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "autoscaling_policies_model_region_pk" PRIMARY KEY("model","region")
);
--> statement-breakpoint
CREATE TABLE "node_launches" (
	"id" text PRIMARY KEY NOT NULL,
	"node_id" text NOT NULL,
	"cluster" text NOT NULL,
	"provider" text NOT NULL,
	"region" text NOT NULL,
	"model" text NOT NULL,
	"gpu" text NOT NULL,
	"spot" boolean DEFAULT false NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"reason" text NOT NULL,
	"requested_by" text NOT NULL,
	"replaces_node_id" text,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"serving_at" timestamp with time zone,
	"terminated_at" timestamp with time zone,
	CONSTRAINT "node_launches_node_id_unique" UNIQUE("node_id")
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "priority_class" text;--> statement-breakpoint
ALTER TABLE "environments" ADD COLUMN "priority_class" text;--> statement-breakpoint
CREATE INDEX "autoscaling_decisions_at_idx" ON "autoscaling_decisions" USING btree ("model","region","at");--> statement-breakpoint
CREATE INDEX "node_launches_state_idx" ON "node_launches" USING btree ("state");--> statement-breakpoint
CREATE INDEX "node_launches_model_region_idx" ON "node_launches" USING btree ("model","region");