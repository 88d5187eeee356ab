/** All drizzle tables; drizzle-kit reads this file (drizzle.config.ts). */
export * from "./tenancy.ts";
export * from "./fleet.ts";
export * from "./usage.ts";
export * from "./conversations.ts";
export * from "./streaming.ts";
export * from "./council.ts";
export * from "./memory.ts";
export * from "./fedattn.ts";
export * from "./dashboard.ts";
export * from "./provisioning.ts";
