import { describe, expect, it } from "vitest";
import { getPage, postForm, signIn } from "./dashboard-helpers.ts";

describe("dashboard sign-in", () => {
  it("sends a visitor without a session to the sign-in page, and lets the admin token in", async () => {
    const anon = await getPage({ cookies: new Map() }, "/dashboard/tenants");
    expect(anon.status).toBe(303);
    expect(anon.headers.get("location")).toBe("/dashboard/login?next=%2Fdashboard%2Ftenants");
    const b = await signIn();
    const page = await getPage(b, "/dashboard");
    expect(page.html).toContain("Operator");
    expect(page.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(page.headers.get("cache-control")).toBe("no-store");
  });

  it("refuses a change without the session's CSRF token", async () => {
    const b = await signIn();
    const forged = await postForm(b, "/dashboard/logout", { _csrf: "forged" });
    // Sign-out without the token does nothing: the session still works.
    expect(forged.status).toBe(303);
    expect((await getPage(b, "/dashboard")).status).toBe(200);
  });
});
