/** The caches' admin answers (cache/admin.ts), shared with the admin CLI (worker/cli/cache.ts). */

/** A tenant's share of the response and embeddings caches (`GET /admin/cache/:tenant_id`). */
export interface TenantCacheJson {
  object: "tenant_cache";
  tenant_id: string;
  /** Entries not yet expired (cached answers and embeddings together). */
  entries: number;
  /** Bytes its entries take, counted against `max_bytes` (entries expired since the last write included until the next one). */
  bytes: number;
  max_bytes: number;
}

/** What `DELETE /admin/cache/:tenant_id` answers. */
export interface TenantCachePurgeJson {
  object: "tenant_cache";
  tenant_id: string;
  purged: true;
  /** Entries deleted. */
  deleted: number;
}
