/**
 * Connection strings carry passwords; nothing this tool prints or throws may. `maskUrl` is for URLs
 * we show on purpose, `redactor` scrubs text we did not write (pg_dump's stderr, driver errors).
 */

const MASK = "***";

/** The URL with its password (userinfo or `?password=`) replaced by `***`; unparseable input is not echoed. */
export function maskUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "<connection string that is not a URL>";
  }
  if (parsed.password !== "") parsed.password = MASK;
  if (parsed.searchParams.has("password")) parsed.searchParams.set("password", MASK);
  return parsed.toString().replaceAll(encodeURIComponent(MASK), MASK);
}

/** The password of a connection URL, decoded ("" when it has none or is not a URL). */
export function urlPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") return decodeURIComponent(parsed.password);
    return parsed.searchParams.get("password") ?? "";
  } catch {
    return "";
  }
}

/** A function that replaces the given URLs by their masked form and any of their passwords by `***`. */
export function redactor(urls: readonly string[]): (text: string) => string {
  const secrets = new Set<string>();
  for (const url of urls) {
    const password = urlPassword(url);
    if (password === "") continue;
    secrets.add(password);
    secrets.add(encodeURIComponent(password));
  }
  // Longest first, so a password that contains another is replaced whole.
  const ordered = [...secrets].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const url of urls) out = out.replaceAll(url, maskUrl(url));
    for (const secret of ordered) out = out.replaceAll(secret, MASK);
    return out;
  };
}
