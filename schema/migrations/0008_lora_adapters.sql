ALTER TABLE "models" ADD COLUMN "base_model" text;--> statement-breakpoint
ALTER TABLE "models" ADD COLUMN "adapter_source" text;--> statement-breakpoint
ALTER TABLE "models" ADD CONSTRAINT "models_base_model_models_id_fk" FOREIGN KEY ("base_model") REFERENCES "public"."models"("id") ON DELETE no action ON UPDATE no action;