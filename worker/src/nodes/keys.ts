import { deriveNodeSecret, importSigningKey, type SigningKey } from "../../../schema/contracts/signing.ts";

const signingKeys = new Map<string, Promise<SigningKey>>();

/** A node's HMAC key, derived from the master secret once per isolate, master secret and node secret version. */
export function nodeSigningKey(masterSecret: string, nodeId: string, secretVersion: number): Promise<SigningKey> {
  // The master secret is part of the key (it is in this isolate's memory anyway): a process that
  // serves two gateways' secrets (tests, benchmarks) must not hand one's key to the other.
  const id = `${masterSecret}\n${nodeId}:${secretVersion}`;
  let key = signingKeys.get(id);
  if (!key) {
    key = deriveNodeSecret(masterSecret, nodeId, secretVersion).then(importSigningKey);
    // A failed derivation must not poison the cache.
    key.catch(() => signingKeys.delete(id));
    signingKeys.set(id, key);
  }
  return key;
}
