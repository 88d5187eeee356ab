CREATE TABLE "spot_events" (
	"id" text PRIMARY KEY NOT NULL,
	"node_id" text NOT NULL,
	"provider" text NOT NULL,
	"action" text NOT NULL,
	"deadline" timestamp with time zone,
	"noticed_at" timestamp with time zone NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"detail" jsonb DEFAULT '{}'::jsonb NOT NULL
);
--> statement-breakpoint
ALTER TABLE "regions" ALTER COLUMN "latitude" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "regions" ALTER COLUMN "longitude" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "nodes" ADD COLUMN "reported_status" text;--> statement-breakpoint
CREATE INDEX "spot_events_node_idx" ON "spot_events" USING btree ("node_id","received_at");