import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Loopback fakes of the three clouds' metadata servers, serving the payloads and enforcing the headers
 * documented in /work/shared/reference/wire-formats.md §3 (AWS IMDSv2, GCP metadata, Azure Scheduled
 * Events). Each can be stopped and started again on the same port to play a server that goes away.
 */

/** A request a fake received. */
export interface RecordedRequest {
  method: string;
  /** Path with query. */
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

/** Shared controls of every fake. */
export interface FakeMetadataServer {
  /** Base URL, e.g. http://127.0.0.1:40123 (stays the same across stop/start). */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Stops listening and drops connections, as if the server went away. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  /** Stops for good; safe to call twice. */
  close(): Promise<void>;
}

type Reply = { status: number; headers: Record<string, string>; body: string };
type Handler = (req: IncomingMessage, path: string, body: string) => Reply;

async function startFake(handler: Handler): Promise<FakeMetadataServer> {
  const requests: RecordedRequest[] = [];
  let server: Server | null = null;
  let port = 0;
  const listen = async () => {
    const s = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const path = req.url ?? "/";
        const body = Buffer.concat(chunks).toString("utf8");
        const reply = handler(req, path, body);
        requests.push({ method: req.method ?? "GET", path, headers: req.headers, body, status: reply.status });
        res.writeHead(reply.status, { "content-length": Buffer.byteLength(reply.body), ...reply.headers });
        res.end(reply.body);
      });
    });
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve());
    });
    port = (s.address() as AddressInfo).port;
    server = s;
  };
  const stop = async () => {
    const s = server;
    if (s === null) return;
    server = null;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return { url: `http://127.0.0.1:${port}`, requests, stop, start: listen, close: stop };
}

function awsPage(status: number, title: string): Reply {
  const body = `<?xml version="1.0" encoding="iso-8859-1"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n <head>\n  <title>${status} - ${title}</title>\n </head>\n <body>\n  <h1>${status} - ${title}</h1>\n </body>\n</html>\n`;
  return { status, headers: { "content-type": "text/html" }, body };
}

/** Fake AWS IMDSv2 (tokens required, as on instances with HttpTokens=required). */
export interface FakeAws extends FakeMetadataServer {
  /** TTL header value of every token PUT. */
  readonly tokenRequests: string[];
  /** Makes `spot/instance-action` answer 200 `{"action","time"}`. */
  interrupt(action: "terminate" | "stop" | "hibernate", time: string): void;
  /** Makes `events/recommendations/rebalance` answer 200 `{"noticeTime"}`. */
  recommendRebalance(noticeTime: string): void;
  /** Invalidates every token issued so far (their next use gets 401). */
  revokeTokens(): void;
}

/** Starts a fake AWS instance metadata service. */
export async function startFakeAws(): Promise<FakeAws> {
  const tokens = new Map<string, number>();
  const tokenRequests: string[] = [];
  let instanceAction: Record<string, string> | null = null;
  let rebalance: Record<string, string> | null = null;
  const fake = await startFake((req, path) => {
    // IMDS refuses requests that went through a proxy.
    if (req.headers["x-forwarded-for"] !== undefined) return awsPage(403, "Forbidden");
    if (path === "/latest/api/token") {
      if (req.method !== "PUT") return awsPage(405, "Method Not Allowed");
      const ttlHeader = req.headers["x-aws-ec2-metadata-token-ttl-seconds"];
      const ttl = Number(ttlHeader);
      if (typeof ttlHeader !== "string" || !Number.isInteger(ttl) || ttl < 1 || ttl > 21_600) return awsPage(400, "Missing or Invalid Parameters");
      tokenRequests.push(ttlHeader);
      const token = randomBytes(42).toString("base64");
      tokens.set(token, Date.now() + ttl * 1000);
      return { status: 200, headers: { "content-type": "text/plain", "x-aws-ec2-metadata-token-ttl-seconds": ttlHeader }, body: token };
    }
    if (req.method !== "GET") return awsPage(405, "Method Not Allowed");
    const token = req.headers["x-aws-ec2-metadata-token"];
    const expiresAt = typeof token === "string" ? tokens.get(token) : undefined;
    if (expiresAt === undefined || expiresAt < Date.now()) return awsPage(401, "Unauthorized");
    const json = (value: Record<string, string> | null) =>
      value === null ? awsPage(404, "Not Found") : { status: 200, headers: { "content-type": "text/plain" }, body: JSON.stringify(value) };
    if (path === "/latest/meta-data/spot/instance-action") return json(instanceAction);
    if (path === "/latest/meta-data/events/recommendations/rebalance") return json(rebalance);
    return awsPage(404, "Not Found");
  });
  return Object.assign(fake, {
    tokenRequests,
    interrupt(action: string, time: string) {
      instanceAction = { action, time };
    },
    recommendRebalance(noticeTime: string) {
      rebalance = { noticeTime };
    },
    revokeTokens() {
      tokens.clear();
    },
  });
}

/** Fake GCP metadata server. */
export interface FakeGcp extends FakeMetadataServer {
  /** Makes `instance/preempted` answer TRUE. */
  preempt(): void;
}

/** Starts a fake GCP metadata server. */
export async function startFakeGcp(): Promise<FakeGcp> {
  let preempted = false;
  const fake = await startFake((req, path) => {
    // Every answer carries Metadata-Flavor: Google, including refusals.
    const headers = { "metadata-flavor": "Google", "content-type": "application/text" };
    if (req.headers["metadata-flavor"] !== "Google" || req.headers["x-forwarded-for"] !== undefined) {
      const body = `Your client does not have permission to get URL <code>${path}</code> from this server. Missing Metadata-Flavor:Google header.`;
      return { status: 403, headers: { ...headers, "content-type": "text/html; charset=UTF-8" }, body };
    }
    if (req.method === "GET" && path === "/computeMetadata/v1/instance/preempted") {
      return { status: 200, headers, body: preempted ? "TRUE" : "FALSE" };
    }
    return { status: 404, headers: { ...headers, "content-type": "text/html; charset=UTF-8" }, body: "Not Found" };
  });
  return Object.assign(fake, {
    preempt() {
      preempted = true;
    },
  });
}

/** One Azure scheduled event, as the service serves it. */
export interface AzureEvent {
  EventId: string;
  EventStatus: "Scheduled" | "Started";
  EventType: "Preempt" | "Reboot" | "Redeploy" | "Freeze" | "Terminate";
  ResourceType: "VirtualMachine";
  Resources: string[];
  NotBefore: string;
  Description: string;
  EventSource: "Platform" | "User";
  DurationInSeconds: number;
}

/** Fake Azure Scheduled Events endpoint. */
export interface FakeAzure extends FakeMetadataServer {
  /** Adds an event (defaults: a Preempt of "vm-1" 30 s from now); bumps DocumentIncarnation. */
  schedule(event?: Partial<AzureEvent>): AzureEvent;
  /** Event ids approved with a StartRequests POST. */
  readonly startRequests: string[];
}

const azureJson = (status: number, value: unknown): Reply => ({
  status,
  headers: { "content-type": "application/json; charset=utf-8" },
  body: JSON.stringify(value),
});

/** Starts a fake Azure Instance Metadata Service serving Scheduled Events. */
export async function startFakeAzure(): Promise<FakeAzure> {
  const events: AzureEvent[] = [];
  const startRequests: string[] = [];
  let incarnation = 1;
  const fake = await startFake((req, path, body) => {
    if (req.headers.metadata !== "true" || req.headers["x-forwarded-for"] !== undefined) {
      return azureJson(400, { error: "Bad request. Required metadata header not specified" });
    }
    const url = new URL(path, "http://169.254.169.254");
    if (url.pathname !== "/metadata/scheduledevents") return azureJson(404, { error: "Not found" });
    if (!url.searchParams.get("api-version")) {
      return azureJson(400, { error: "Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds" });
    }
    if (req.method === "GET") return azureJson(200, { DocumentIncarnation: incarnation, Events: events });
    if (req.method === "POST") {
      const parsed = JSON.parse(body || "{}") as { StartRequests?: { EventId?: string }[] };
      for (const request of parsed.StartRequests ?? []) if (request.EventId) startRequests.push(request.EventId);
      return { status: 200, headers: {}, body: "" };
    }
    return azureJson(405, { error: "Method not allowed" });
  });
  return Object.assign(fake, {
    startRequests,
    schedule(partial: Partial<AzureEvent> = {}) {
      const event: AzureEvent = {
        EventId: randomUUID().toUpperCase(),
        EventStatus: "Scheduled",
        EventType: "Preempt",
        ResourceType: "VirtualMachine",
        Resources: ["vm-1"],
        NotBefore: new Date(Date.now() + 30_000).toUTCString(),
        Description: "",
        EventSource: "Platform",
        DurationInSeconds: -1,
        ...partial,
      };
      events.push(event);
      incarnation++;
      return event;
    },
  });
}
