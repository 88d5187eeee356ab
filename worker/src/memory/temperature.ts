/**
 * The memory trails' temperature model (docs/memory.md). A trail's stored `temperature` is as of
 * `temperature_at`; its temperature now is that value decayed exponentially with the half-life:
 * T(now) = T × 0.5^((now − temperature_at) / half-life). A breadcrumb on an existing trail sets it to
 * min(100, T(now) + WARM_UP); a new trail starts at START_TEMPERATURE.
 */
import { sql, type SQL } from "drizzle-orm";
import { memoryTrails } from "../../../schema/tables/index.ts";

/** The temperature of a new trail. */
export const START_TEMPERATURE = 85;
/** What a breadcrumb on an existing trail adds to its decayed temperature… */
export const WARM_UP = 10;
/** …up to this. */
export const MAX_TEMPERATURE = 100;
/** The half-life when the caller does not say (MEMORY_HALF_LIFE_HOURS' default). */
export const DEFAULT_HALF_LIFE_HOURS = 24;

// Postgres raises "value out of range: underflow" for 0.5^x past about 1074; a trail 1000
// half-lives old is at 100 × 2^-1000, zero for every purpose.
const MAX_HALF_LIVES = 1000;

/** A temperature as the API shows it: two decimals. */
export function shownTemperature(t: number): number {
  return Math.round(t * 100) / 100;
}

/**
 * SQL for the trail's temperature at the statement's `now()`, from its stored temperature and
 * `temperature_at` (a `temperature_at` ahead of `now()`, written by a transaction that started
 * later, counts as no time elapsed).
 */
export function decayedTemperature(halfLifeHours: number): SQL<number> {
  const halfLifeSeconds = halfLifeHours * 3600;
  return sql<number>`(${memoryTrails.temperature} * power(0.5::float8, least(${MAX_HALF_LIVES}::float8, greatest(0::float8, extract(epoch from (now() - ${memoryTrails.temperatureAt}))::float8) / ${halfLifeSeconds}::float8)))`.mapWith(
    Number,
  );
}
