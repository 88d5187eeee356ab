// Stored responses of the OpenAI Responses API (worker ↔ backplane). vLLM keeps a stored response
// in the memory of the engine process that made it, so every call that names one (retrieve, cancel,
// delete, input items, and a new response with `previous_response_id`) must reach that engine. The
// gateway routes by the node named in the response id (worker/src/responses/ids.ts); the backplane
// remembers which of its engines made each id (backplane/src/proxy/stored-responses.ts).

/** A stored response's own routes, by path without the query: the id, and what is asked of it. */
const STORED_RESPONSE = /^\/v1\/responses\/([A-Za-z0-9._~-]{1,200})(\/cancel|\/input_items)?$/;

/** What a path names of a stored response: its id and the operation; null for other paths. */
export function storedResponseCall(path: string): { id: string; op: "item" | "cancel" | "input_items" } | null {
  const match = STORED_RESPONSE.exec(path);
  if (!match?.[1]) return null;
  const op = match[2] === "/cancel" ? "cancel" : match[2] === "/input_items" ? "input_items" : "item";
  return { id: match[1], op };
}

/** The methods each operation takes: retrieve and delete the item, cancel it, list its input items. */
export function storedResponseMethodAllowed(op: "item" | "cancel" | "input_items", method: string): boolean {
  if (op === "item") return method === "GET" || method === "DELETE";
  if (op === "cancel") return method === "POST";
  return method === "GET";
}
