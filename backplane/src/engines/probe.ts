/** Result of one engine health probe. */
export interface EngineProbe {
  healthy: boolean;
  latency_ms: number;
  error: string | null;
}

/** Probes an OpenAI-compatible engine's `/health` (vLLM: 200 with an empty body when healthy). */
export async function probeEngine(baseUrl: string, timeoutMs: number): Promise<EngineProbe> {
  const started = performance.now();
  try {
    const res = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    const latency = Math.round(performance.now() - started);
    return res.ok
      ? { healthy: true, latency_ms: latency, error: null }
      : { healthy: false, latency_ms: latency, error: `engine /health answered ${res.status}` };
  } catch (err) {
    return { healthy: false, latency_ms: Math.round(performance.now() - started), error: String(err) };
  }
}
