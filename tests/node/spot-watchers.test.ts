import { afterEach, describe, expect, it } from "vitest";
import type { SpotConfig } from "../../backplane/src/config.ts";
import { AWS_TOKEN_TTL_SECONDS, GCP_PREEMPTION_NOTICE_MS, startSpotWatchers, type SpotWatcherHandle } from "../../backplane/src/spot/index.ts";
import { spotNoticeSchema, type SpotNotice } from "../../schema/contracts/heartbeat.ts";
import { type FakeMetadataServer, startFakeAws, startFakeAzure, startFakeGcp } from "../support/fake-metadata.ts";

// Spot watchers against loopback fakes of the AWS, GCP and Azure metadata servers.

const POLL_MS = 20;
const NODE_ID = "gpu-1";

let watchers: SpotWatcherHandle | null = null;
let fakes: FakeMetadataServer[] = [];

afterEach(async () => {
  await watchers?.close();
  watchers = null;
  await Promise.all(fakes.map((f) => f.close()));
  fakes = [];
});

function track<T extends FakeMetadataServer>(fake: T): T {
  fakes.push(fake);
  return fake;
}

function spotConfig(overrides: Partial<SpotConfig>): SpotConfig {
  return {
    aws: false,
    gcp: false,
    azure: false,
    awsMetadataUrl: "http://127.0.0.1:9",
    gcpMetadataUrl: "http://127.0.0.1:9",
    azureMetadataUrl: "http://127.0.0.1:9",
    pollIntervalMs: POLL_MS,
    ...overrides,
  };
}

interface Recorded {
  notices: { notice: SpotNotice; drain: boolean }[];
  logs: { event: string; fields: Record<string, unknown> }[];
}

function start(config: SpotConfig): Recorded {
  const recorded: Recorded = { notices: [], logs: [] };
  watchers = startSpotWatchers(
    config,
    NODE_ID,
    (notice, drain) => recorded.notices.push({ notice, drain }),
    (event, fields) => recorded.logs.push({ event, fields }),
  );
  return recorded;
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Waits until the fake has served `count` more requests than now, i.e. the watcher kept polling. */
async function morePolls(fake: FakeMetadataServer, count: number): Promise<void> {
  const target = fake.requests.length + count;
  await waitFor(() => fake.requests.length >= target, `${count} more polls`);
}

describe("spot watchers", () => {
  it("reports an AWS interruption once, with the cloud's time as deadline, and asks to drain", async () => {
    const aws = track(await startFakeAws());
    const recorded = start(spotConfig({ aws: true, awsMetadataUrl: aws.url }));
    await morePolls(aws, 3);
    expect(recorded.notices).toEqual([]);

    aws.interrupt("terminate", "2031-05-04T12:00:00Z");
    await waitFor(() => recorded.notices.length > 0, "the notice");
    await morePolls(aws, 6);
    expect(recorded.notices).toHaveLength(1);
    const [{ notice, drain }] = recorded.notices as [Recorded["notices"][number]];
    expect(drain).toBe(true);
    expect(notice).toMatchObject({
      nodeId: NODE_ID,
      provider: "aws",
      action: "terminate",
      deadline: "2031-05-04T12:00:00.000Z",
      detail: { action: "terminate", time: "2031-05-04T12:00:00Z" },
    });
    expect(Math.abs(Date.parse(notice.noticedAt) - Date.now())).toBeLessThan(5_000);
    expect(spotNoticeSchema.safeParse(notice).success).toBe(true);
    expect(recorded.logs.filter((l) => l.event === "spot_notice")).toHaveLength(1);
  });

  it("reports an AWS rebalance recommendation once, without a deadline and without draining", async () => {
    const aws = track(await startFakeAws());
    aws.recommendRebalance("2031-05-04T11:58:00Z");
    const recorded = start(spotConfig({ aws: true, awsMetadataUrl: aws.url }));
    await waitFor(() => recorded.notices.length > 0, "the notice");
    await morePolls(aws, 6);
    expect(recorded.notices).toHaveLength(1);
    expect(recorded.notices[0]?.drain).toBe(false);
    expect(recorded.notices[0]?.notice).toMatchObject({ provider: "aws", action: "rebalance", deadline: null, detail: { noticeTime: "2031-05-04T11:58:00Z" } });

    // The interruption that follows is a new event and does drain.
    aws.interrupt("stop", "2031-05-04T12:00:00Z");
    await waitFor(() => recorded.notices.length > 1, "the interruption");
    expect(recorded.notices[1]).toMatchObject({ drain: true, notice: { action: "stop", deadline: "2031-05-04T12:00:00.000Z" } });
  });

  it("fetches one IMDSv2 token with the 6 h TTL header, reuses it, and fetches another after a 401", async () => {
    const aws = track(await startFakeAws());
    start(spotConfig({ aws: true, awsMetadataUrl: aws.url }));
    await waitFor(() => aws.requests.filter((r) => r.method === "GET").length >= 6, "six metadata GETs");
    expect(aws.tokenRequests).toEqual([String(AWS_TOKEN_TTL_SECONDS)]);
    expect(AWS_TOKEN_TTL_SECONDS).toBe(21_600);
    const gets = aws.requests.filter((r) => r.method === "GET");
    const token = gets[0]?.headers["x-aws-ec2-metadata-token"];
    expect(typeof token).toBe("string");
    expect(gets.every((r) => r.headers["x-aws-ec2-metadata-token"] === token && r.status === 404)).toBe(true);
    expect(new Set(gets.map((r) => r.path))).toEqual(new Set(["/latest/meta-data/spot/instance-action", "/latest/meta-data/events/recommendations/rebalance"]));

    aws.revokeTokens();
    await waitFor(() => aws.tokenRequests.length === 2, "a second token");
    await morePolls(aws, 4);
    const after = aws.requests.slice(-2);
    expect(after.every((r) => r.status === 404 && r.headers["x-aws-ec2-metadata-token"] !== token)).toBe(true);
  });

  it("reports GCP preemption once, with the default 30 s notice as deadline", async () => {
    const gcp = track(await startFakeGcp());
    const recorded = start(spotConfig({ gcp: true, gcpMetadataUrl: gcp.url }));
    await morePolls(gcp, 3);
    expect(recorded.notices).toEqual([]);
    expect(gcp.requests.every((r) => r.headers["metadata-flavor"] === "Google" && r.status === 200)).toBe(true);

    gcp.preempt();
    await waitFor(() => recorded.notices.length > 0, "the notice");
    await morePolls(gcp, 6);
    expect(recorded.notices).toHaveLength(1);
    const [{ notice, drain }] = recorded.notices as [Recorded["notices"][number]];
    expect(drain).toBe(true);
    expect(notice).toMatchObject({ nodeId: NODE_ID, provider: "gcp", action: "preempt", detail: { preempted: "TRUE" } });
    expect(GCP_PREEMPTION_NOTICE_MS).toBe(30_000);
    expect(Date.parse(notice.deadline ?? "")).toBe(Date.parse(notice.noticedAt) + 30_000);
    expect(spotNoticeSchema.safeParse(notice).success).toBe(true);
  });

  it("reports an Azure Preempt event once with NotBefore as deadline, ignores other events, and does not acknowledge", async () => {
    const azure = track(await startFakeAzure());
    azure.schedule({ EventType: "Freeze", NotBefore: "Mon, 05 May 2031 10:00:00 GMT" });
    const recorded = start(spotConfig({ azure: true, azureMetadataUrl: azure.url }));
    await morePolls(azure, 3);
    expect(recorded.notices).toEqual([]);

    const event = azure.schedule({ EventType: "Preempt", NotBefore: "Mon, 05 May 2031 10:00:30 GMT" });
    await waitFor(() => recorded.notices.length > 0, "the notice");
    await morePolls(azure, 6);
    expect(recorded.notices).toHaveLength(1);
    const [{ notice, drain }] = recorded.notices as [Recorded["notices"][number]];
    expect(drain).toBe(true);
    expect(notice).toMatchObject({
      provider: "azure",
      action: "preempt",
      deadline: "2031-05-05T10:00:30.000Z",
      detail: { EventId: event.EventId, EventType: "Preempt", NotBefore: "Mon, 05 May 2031 10:00:30 GMT" },
    });
    expect(spotNoticeSchema.safeParse(notice).success).toBe(true);
    expect(azure.startRequests).toEqual([]);
    expect(azure.requests.every((r) => r.method === "GET" && r.headers.metadata === "true" && r.path === "/metadata/scheduledevents?api-version=2020-07-01")).toBe(true);
  });

  it("never calls back while no cloud has a notice pending", async () => {
    const [aws, gcp, azure] = [track(await startFakeAws()), track(await startFakeGcp()), track(await startFakeAzure())];
    const recorded = start(spotConfig({ aws: true, gcp: true, azure: true, awsMetadataUrl: aws.url, gcpMetadataUrl: gcp.url, azureMetadataUrl: azure.url }));
    await Promise.all([morePolls(aws, 8), morePolls(gcp, 4), morePolls(azure, 4)]);
    expect(recorded.notices).toEqual([]);
    expect(recorded.logs.map((l) => l.event).sort()).toEqual(["spot_watcher_started", "spot_watcher_started", "spot_watcher_started"]);
  });

  it("survives a metadata server going down, logs it once, and reports a notice after it comes back", async () => {
    const gcp = track(await startFakeGcp());
    const recorded = start(spotConfig({ gcp: true, gcpMetadataUrl: gcp.url }));
    await morePolls(gcp, 2);

    await gcp.stop();
    await waitFor(() => recorded.logs.some((l) => l.event === "spot_metadata_unreachable"), "the unreachable log");
    // Let several more polls fail: still one log line.
    await new Promise((resolve) => setTimeout(resolve, POLL_MS * 10));
    const unreachable = recorded.logs.filter((l) => l.event === "spot_metadata_unreachable");
    expect(unreachable).toHaveLength(1);
    expect(unreachable[0]?.fields).toMatchObject({ provider: "gcp", url: gcp.url, error: expect.any(String) as unknown });

    await gcp.start();
    gcp.preempt();
    await waitFor(() => recorded.notices.length > 0, "the notice after recovery");
    expect(recorded.logs.filter((l) => l.event === "spot_metadata_reachable")).toHaveLength(1);
    expect(recorded.notices[0]?.notice.provider).toBe("gcp");
  });

  it("logs an unreachable AWS endpoint once and keeps polling when nothing listens at all", async () => {
    const aws = track(await startFakeAws());
    await aws.stop();
    const recorded = start(spotConfig({ aws: true, awsMetadataUrl: aws.url }));
    await waitFor(() => recorded.logs.some((l) => l.event === "spot_metadata_unreachable"), "the unreachable log");
    await aws.start();
    await waitFor(() => recorded.logs.some((l) => l.event === "spot_metadata_reachable"), "the reachable log");
    expect(recorded.logs.filter((l) => l.event === "spot_metadata_unreachable")).toHaveLength(1);
    expect(JSON.stringify(recorded.logs)).not.toContain(String(aws.requests.find((r) => r.method === "GET")?.headers["x-aws-ec2-metadata-token"]));
  });

  it("stops polling on close, and close is safe to call twice", async () => {
    const azure = track(await startFakeAzure());
    start(spotConfig({ azure: true, azureMetadataUrl: azure.url }));
    await morePolls(azure, 2);
    const handle = watchers;
    await handle?.close();
    await handle?.close();
    const served = azure.requests.length;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS * 5));
    expect(azure.requests.length).toBe(served);
  });
});

describe("fake metadata servers", () => {
  it("refuse requests without the documented headers, as the clouds do", async () => {
    const [aws, gcp, azure] = [track(await startFakeAws()), track(await startFakeGcp()), track(await startFakeAzure())];
    expect((await fetch(`${aws.url}/latest/meta-data/spot/instance-action`)).status).toBe(401);
    expect((await fetch(`${aws.url}/latest/api/token`, { method: "PUT" })).status).toBe(400);
    const gcpRes = await fetch(`${gcp.url}/computeMetadata/v1/instance/preempted`);
    expect(gcpRes.status).toBe(403);
    expect(gcpRes.headers.get("metadata-flavor")).toBe("Google");
    const azureRes = await fetch(`${azure.url}/metadata/scheduledevents?api-version=2020-07-01`);
    expect(azureRes.status).toBe(400);
    expect(await azureRes.json()).toEqual({ error: "Bad request. Required metadata header not specified" });
  });
});
