import { describe, expect, it } from "vitest";
import type { RawConfig } from "../../backplane/src/config.ts";
import { startFakeAws, startFakeAzure, startFakeGcp } from "../support/fake-metadata.ts";
import { startRecordingGateway, type RecordingGateway } from "../support/recording-gateway.ts";
import { signedPost, TEST_NODE, TEST_SECRET, useBackplane, waitUntil } from "../support/backplane-harness.ts";

const kit = useBackplane();
const chat = { model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], max_tokens: 2 };

async function nodeWatching(spot: RawConfig): Promise<{ url: string; gateway: RecordingGateway }> {
  const gateway = await startRecordingGateway(TEST_SECRET);
  kit.defer(() => gateway.close());
  const sim = await kit.sim();
  const node = await kit.daemon([{ kind: "sim", url: sim.url }], { gatewayUrl: gateway.url, spotPollIntervalMs: "100", heartbeatIntervalMs: "60000", ...spot });
  const ok = await signedPost(node.url, "/v1/chat/completions", chat);
  expect(ok.status).toBe(200);
  await ok.arrayBuffer();
  return { url: node.url, gateway };
}

async function expectDrainedAndReported(url: string, gateway: RecordingGateway, provider: string): Promise<void> {
  await waitUntil(() => gateway.spotNotices.length > 0, 5_000, "spot notice at the gateway");
  expect(gateway.spotNotices[0]).toMatchObject({ nodeId: TEST_NODE, provider });
  await waitUntil(() => gateway.heartbeats.some((h) => h.status === "draining"), 3_000, "draining heartbeat");
  const health = (await (await fetch(`${url}/health`)).json()) as { status: string; draining_reason: string };
  expect(health).toMatchObject({ status: "draining", draining_reason: `spot:${provider}` });
  const refused = await signedPost(url, "/v1/chat/completions", chat);
  expect(refused.status).toBe(503);
  expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("draining");
  expect(gateway.rejected).toEqual([]);
}

describe("spot interruption notices", () => {
  it("AWS: an instance-action drains the node and tells the gateway the deadline", async () => {
    const aws = await startFakeAws();
    kit.defer(() => aws.close());
    const { url, gateway } = await nodeWatching({ spotAws: true, awsMetadataUrl: aws.url });
    const time = new Date(Date.now() + 120_000).toISOString().replace(/\.\d+Z$/, "Z");
    aws.interrupt("terminate", time);
    await expectDrainedAndReported(url, gateway, "aws");
    expect(gateway.spotNotices[0]?.action).toBe("terminate");
    expect(new Date(gateway.spotNotices[0]?.deadline ?? 0).toISOString()).toBe(new Date(time).toISOString());
  });

  it("AWS: a rebalance recommendation is reported but does not drain", async () => {
    const aws = await startFakeAws();
    kit.defer(() => aws.close());
    const { url, gateway } = await nodeWatching({ spotAws: true, awsMetadataUrl: aws.url });
    aws.recommendRebalance(new Date().toISOString().replace(/\.\d+Z$/, "Z"));
    await waitUntil(() => gateway.spotNotices.length > 0, 5_000, "rebalance notice");
    expect(gateway.spotNotices[0]).toMatchObject({ provider: "aws", action: "rebalance", deadline: null });
    const health = (await (await fetch(`${url}/health`)).json()) as { status: string };
    expect(health.status).toBe("ready");
  });

  it("GCP: preempted=TRUE drains the node and reports it", async () => {
    const gcp = await startFakeGcp();
    kit.defer(() => gcp.close());
    const { url, gateway } = await nodeWatching({ spotGcp: true, gcpMetadataUrl: gcp.url });
    gcp.preempt();
    await expectDrainedAndReported(url, gateway, "gcp");
  });

  it("Azure: a Preempt scheduled event drains the node and reports its NotBefore", async () => {
    const azure = await startFakeAzure();
    kit.defer(() => azure.close());
    const { url, gateway } = await nodeWatching({ spotAzure: true, azureMetadataUrl: azure.url });
    azure.schedule({ EventType: "Preempt" });
    await expectDrainedAndReported(url, gateway, "azure");
    expect(gateway.spotNotices[0]?.deadline).not.toBeNull();
  });
});
