/**
 * `npm run db:check`: fails when schema/tables and the committed migrations disagree, by running
 * `drizzle-kit generate` against a copy of the migrations and checking that it finds nothing to do.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
// drizzle-kit resolves paths relative to the working directory, so the scratch copy lives in the
// repo's git-ignored .data folder.
mkdirSync(join(root, ".data"), { recursive: true });
const work = mkdtempSync(join(root, ".data", "dbcheck-"));
try {
  const out = join(work, "migrations");
  cpSync(join(root, "schema/migrations"), out, { recursive: true });
  const before = readdirSync(out).filter((f) => f.endsWith(".sql")).length;
  const config = join(work, "drizzle.config.ts");
  writeFileSync(
    config,
    `export default { dialect: "postgresql", schema: "./schema/tables/index.ts", out: ${JSON.stringify("./" + relative(root, out))} };\n`,
  );
  const drizzleKit = join(root, "node_modules/drizzle-kit/bin.cjs");
  for (const command of ["check", "generate"]) {
    execFileSync(process.execPath, [drizzleKit, command, "--config", config], { cwd: root, stdio: "pipe" });
  }
  const after = readdirSync(out).filter((f) => f.endsWith(".sql")).length;
  if (after !== before) {
    console.error("schema/tables and schema/migrations disagree: run `npm run db:generate` and commit the new migration.");
    process.exitCode = 1;
  }
  else console.log("db:check: schema and migrations agree.");
} finally {
  rmSync(work, { recursive: true, force: true });
}
