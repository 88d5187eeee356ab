/**
 * Accessibility checks for the dashboard's browser tests (WCAG 2.x AA): text contrast against the
 * effective background, a visible focus indicator on every element the keyboard reaches, an
 * accessible name on every form control, and heading order. The in-page parts are JavaScript source
 * strings (the Node tsconfig has no DOM types) run with `page.evaluate`.
 */
import type { Page } from "playwright-core";

/** A text whose contrast is below AA. */
export interface ContrastFailure {
  /** Where: tag, id and classes of the element and its parent. */
  element: string;
  text: string;
  color: string;
  background: string;
  ratio: number;
  /** 4.5, or 3 for large text. */
  required: number;
}

/** An element the keyboard reaches without a visible focus indicator. */
export interface FocusFailure {
  element: string;
  text: string;
  /** Why: no outline or shadow, or an outline below 3:1 against its background. */
  reason: string;
}

/** A form control without an accessible name. */
export interface UnlabelledControl {
  element: string;
  html: string;
}

/** Shared in-page helpers: colour parsing, compositing, luminance, effective background. */
const HELPERS = String.raw`
const parse = (s) => {
  const m = /rgba?\(([^)]+)\)/.exec(s || "");
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
};
const over = (top, bottom) => {
  const a = top.a + bottom.a * (1 - top.a);
  if (a === 0) return { r: 0, g: 0, b: 0, a: 0 };
  const mix = (t, b) => (t * top.a + b * bottom.a * (1 - top.a)) / a;
  return { r: mix(top.r, bottom.r), g: mix(top.g, bottom.g), b: mix(top.b, bottom.b), a };
};
const lum = (c) => {
  const ch = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * ch(c.r) + 0.7152 * ch(c.g) + 0.0722 * ch(c.b);
};
const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
const css = (c) => "rgb(" + [c.r, c.g, c.b].map((v) => Math.round(v)).join(", ") + ")";
const WHITE = { r: 255, g: 255, b: 255, a: 1 };
// The background behind an element: its own and its ancestors' background colours composited
// until one is opaque, over a white page.
const backgroundOf = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
  }
  let bg = WHITE;
  for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
  return bg;
};
// Opacity of the element and its ancestors, multiplied (it fades text into its background).
const opacityOf = (el) => { let o = 1; for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity); return o; };
const describe = (el) => {
  const one = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + [...e.classList].map((c) => "." + c).join("");
  return (el.parentElement ? one(el.parentElement) + " > " : "") + one(el);
};
`;

const CONTRAST = String.raw`(() => {
${HELPERS}
const seen = new Set();
const out = [];
const check = (el, text, colour) => {
  if (seen.has(el)) return;
  seen.add(el);
  const st = getComputedStyle(el);
  if (!el.checkVisibility({ checkOpacity: true, visibilityProperty: true })) return;
  if (el.closest(":disabled, [aria-disabled=true]")) return; // WCAG 1.4.3 exempts inactive controls
  const bg = backgroundOf(el);
  const fgRaw = parse(colour ?? st.color);
  if (!fgRaw) return;
  const fg = over({ ...fgRaw, a: fgRaw.a * opacityOf(el) }, bg);
  const size = parseFloat(st.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
  const required = large ? 3 : 4.5;
  const r = ratio(fg, bg);
  if (r + 1e-6 < required) out.push({ element: describe(el), text: text.slice(0, 60), color: css(fg), background: css(bg), ratio: Math.round(r * 100) / 100, required });
};
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const text = (n.textContent || "").trim();
  const el = n.parentElement;
  if (!text || !el || el.closest("script, style, noscript, template")) continue;
  check(el, text);
}
// Typed text in inputs, and their placeholders.
for (const el of document.querySelectorAll("input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select, textarea")) {
  if (el.value) check(el, el.value);
  else if (el.placeholder) check(el, el.placeholder, getComputedStyle(el, "::placeholder").color);
}
return out;
})()`;

const FOCUSED = String.raw`(() => {
${HELPERS}
const el = document.activeElement;
if (!el || el === document.body) return null;
const st = getComputedStyle(el);
const id = describe(el);
const text = (el.getAttribute("aria-label") || el.textContent || el.value || "").trim().slice(0, 40);
// Each element once: numbered at its first stop, so look-alike elements are each checked.
if (!el.dataset.a11yStop) el.dataset.a11yStop = String((window.__a11yStops = (window.__a11yStops || 0) + 1));
const key = el.dataset.a11yStop;
const width = parseFloat(st.outlineWidth) || 0;
const hasOutline = st.outlineStyle !== "none" && width > 0;
const hasShadow = st.boxShadow !== "none" && st.boxShadow !== "";
if (!hasOutline && !hasShadow) return { key, failure: { element: id, text, reason: "no outline or box-shadow when focused" } };
if (hasOutline) {
  const oc = parse(st.outlineColor);
  // The outline is drawn outside the element (offset >= 0): it sits on the parent's background.
  const behind = parseFloat(st.outlineOffset) >= 0 && el.parentElement ? backgroundOf(el.parentElement) : backgroundOf(el);
  if (oc && oc.a > 0) {
    const r = ratio(over(oc, behind), behind);
    if (r < 3) return { key, failure: { element: id, text, reason: "outline " + css(oc) + " on " + css(behind) + " is " + r.toFixed(2) + ":1 (needs 3:1)" } };
  }
}
return { key, failure: null };
})()`;

const UNLABELLED = String.raw`(() => {
${HELPERS}
const textOf = (ids) => ids.split(/\s+/).map((i) => document.getElementById(i)?.textContent ?? "").join(" ").trim();
const out = [];
for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea, button")) {
  let name = "";
  const by = el.getAttribute("aria-labelledby");
  if (by) name = textOf(by);
  if (!name) name = (el.getAttribute("aria-label") || "").trim();
  if (!name && el.labels) name = [...el.labels].map((l) => l.textContent || "").join(" ").trim();
  if (!name && el.tagName === "BUTTON") name = (el.textContent || "").trim();
  if (!name && el.tagName === "INPUT" && ["submit", "button", "reset"].includes(el.type)) name = el.value || (el.type === "submit" ? "Submit" : "");
  if (!name) name = (el.getAttribute("title") || "").trim();
  if (!name) out.push({ element: describe(el), html: el.outerHTML.slice(0, 160) });
}
return out;
})()`;

const HEADINGS = String.raw`[...document.querySelectorAll("h1, h2, h3, h4, h5, h6")].map((h) => ({ level: Number(h.tagName[1]), text: (h.textContent || "").trim() }))`;

/** Texts below WCAG AA contrast (4.5:1; 3:1 for large text) against their effective background. */
export async function contrastFailures(page: Page): Promise<ContrastFailure[]> {
  return page.evaluate<ContrastFailure[]>(CONTRAST);
}

/**
 * Tabs through the page from the top (as a keyboard user does, so `:focus-visible` applies) and
 * returns every stop without a visible focus indicator: an outline or box-shadow, an outline at
 * least 3:1 against what is behind it (WCAG 2.4.7, 1.4.11). Also fails when nothing takes focus.
 */
export async function focusFailures(page: Page, maxStops = 200): Promise<FocusFailure[]> {
  await page.evaluate("document.activeElement instanceof HTMLElement && document.activeElement.blur(); window.scrollTo(0, 0)");
  const failures: FocusFailure[] = [];
  const seen = new Set<string>();
  let first: string | null = null;
  for (let i = 0; i < maxStops; i++) {
    await page.keyboard.press("Tab");
    const got = await page.evaluate<{ key: string; failure: FocusFailure | null } | null>(FOCUSED);
    if (!got) continue;
    // Back at the first stop: the whole page has been walked.
    if (got.key === first) break;
    first ??= got.key;
    if (seen.has(got.key)) continue;
    seen.add(got.key);
    if (got.failure) failures.push(got.failure);
  }
  if (seen.size === 0) failures.push({ element: "body", text: "", reason: "Tab reached no element" });
  return failures;
}

/** Inputs (not hidden), selects, textareas and buttons without an accessible name. */
export async function unlabelledControls(page: Page): Promise<UnlabelledControl[]> {
  return page.evaluate<UnlabelledControl[]>(UNLABELLED);
}

/** Heading problems: not exactly one h1, or a level skipped on the way down (h2 → h4). */
export async function headingProblems(page: Page): Promise<string[]> {
  const hs = await page.evaluate<{ level: number; text: string }[]>(HEADINGS);
  const problems: string[] = [];
  const h1s = hs.filter((h) => h.level === 1).length;
  if (h1s !== 1) problems.push(`${h1s} h1 elements (want exactly one)`);
  let prev = 0;
  for (const h of hs) {
    if (h.level > prev + 1) problems.push(`h${h.level} "${h.text}" follows h${prev || "(none)"}`);
    prev = h.level;
  }
  return problems;
}

/** Every check on the current page, as a report keyed by check (empty lists when it passes). */
export async function auditPage(page: Page): Promise<{ contrast: ContrastFailure[]; focus: FocusFailure[]; unlabelled: UnlabelledControl[]; headings: string[] }> {
  return {
    contrast: await contrastFailures(page),
    unlabelled: await unlabelledControls(page),
    headings: await headingProblems(page),
    focus: await focusFailures(page),
  };
}
