/** Where a caller is, from Cloudflare's `request.cf` (or, where allowed, a header for local testing). */
export interface CallerLocation {
  latitude: number;
  longitude: number;
  source: "cf" | "header";
}

/** Header carrying `<lat>,<lon>`, read only when TRUST_LOCATION_HEADER is on (local stacks, tests). */
export const LOCATION_HEADER = "x-switchyard-client-location";
/** Header with which a caller asks for a region (honoured only where its environment allows). */
export const REGION_HEADER = "x-switchyard-region";

function coordinate(value: unknown, limit: number): number | null {
  const n = typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : NaN;
  return Number.isFinite(n) && Math.abs(n) <= limit ? n : null;
}

/**
 * The caller's location: the trusted header when allowed and well-formed, else `request.cf`'s
 * latitude and longitude (strings on Cloudflare), else null (routing then ignores distance).
 */
export function callerLocation(request: Request, trustHeader: boolean): CallerLocation | null {
  if (trustHeader) {
    const header = request.headers.get(LOCATION_HEADER);
    if (header) {
      const [lat, lon] = header.split(",");
      const latitude = coordinate(lat, 90);
      const longitude = coordinate(lon, 180);
      if (latitude !== null && longitude !== null) return { latitude, longitude, source: "header" };
    }
  }
  const cf = (request as { cf?: { latitude?: unknown; longitude?: unknown } }).cf;
  const latitude = coordinate(cf?.latitude, 90);
  const longitude = coordinate(cf?.longitude, 180);
  return latitude !== null && longitude !== null ? { latitude, longitude, source: "cf" } : null;
}

const EARTH_RADIUS_KM = 6371;
const rad = (deg: number) => (deg * Math.PI) / 180;

/** Great-circle distance in km (haversine). */
export function distanceKm(a: { latitude: number; longitude: number }, b: { latitude: number; longitude: number }): number {
  const dLat = rad(b.latitude - a.latitude);
  const dLon = rad(b.longitude - a.longitude);
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.latitude)) * Math.cos(rad(b.latitude)) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}
