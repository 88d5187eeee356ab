CREATE TABLE "budgets" (
	"id" text PRIMARY KEY NOT NULL,
	"scope" text NOT NULL,
	"scope_id" text NOT NULL,
	"kind" text NOT NULL,
	"period" text NOT NULL,
	"amount" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "limit_overrides" (
	"scope" text NOT NULL,
	"scope_id" text NOT NULL,
	"rpm" integer,
	"tpm" integer,
	"concurrency" integer,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "limit_overrides_scope_scope_id_pk" PRIMARY KEY("scope","scope_id")
);
--> statement-breakpoint
CREATE UNIQUE INDEX "budgets_scope_kind_period_idx" ON "budgets" USING btree ("scope","scope_id","kind","period");