/** `npm run db:migrate`: applies schema/migrations to DATABASE_URL. */
import { migrateDb } from "./db.ts";

const url = process.env.DATABASE_URL;
if (!url) {
  console.error("Set DATABASE_URL to the Postgres (or Neon) database to migrate, e.g. DATABASE_URL=postgres://… npm run db:migrate");
  process.exit(2);
}
await migrateDb(url);
console.log("Migrations applied.");
