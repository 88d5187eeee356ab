/** Types shared by the workerd tests and the Node process that serves them (no runtime code). */

/** Keys of every kind the worker tests need. */
export interface TestKeys {
  valid: string;
  revoked: string;
  expired: string;
  suspended: string;
  embeddingsOnly: string;
  chatOnlyModel: string;
  otherTenant: string;
  toRevoke: string;
}

/** What the worker test services hand to the tests (printed as one JSON line, then `provide`d). */
export interface WorkerTestContext {
  bindings: Record<string, string>;
  /** The worker's ADMIN_TOKEN (the operator's credential for /admin). */
  adminToken: string;
  keys: TestKeys;
  tenantId: string;
  otherTenantId: string;
  liveNodeId: string;
  /** The live node's backplane (its /metrics show the stream reports it gave). */
  liveBackplaneUrl: string;
  /** GET → {"connections": n}: database sessions opened through the Neon pipe so far. */
  statsUrl: string;
  /** An HTTP server that takes requests and never answers (a Redis or database that hangs). */
  blackholeUrl: string;
  /** A backplane that is not registered: tests register it with signed heartbeats (it serves `hb-model`). */
  hbNode: { id: string; url: string };
  /** Two backplanes for the LoRA tests, not registered: both serve `lora-base` with runtime adapter loading; the first also `lora-static`. */
  loraNodes: { id: string; url: string; engineUrl: string }[];
}
