/**
 * The dashboard's browser script. The pages work without it (server-rendered HTML, plain forms, every
 * chart's data as a table); it adds the charts (uPlot), times in the viewer's zone, the copy button
 * and confirmations. Bundled by dev/build-dashboard.ts.
 */
import uPlot from "uplot";

/** A chart's data, as the server embeds it (the figure's `data-chart` attribute). */
interface ChartData {
  /** Bucket starts, Unix seconds. */
  x: number[];
  series: { label: string; values: (number | null)[] }[];
  /** Unit of the values, shown on the axis ("requests", "tokens", "USD", "%", "ms"). */
  unit: string;
}

// High-contrast series colours (each at least 3:1 against the white plot background).
const COLOURS = ["#1f5fbf", "#b3261e", "#2e7d32", "#7b3fa0", "#8a5a00", "#00695c"];

// Axis ticks: small amounts (a fraction of a cent) keep their significant digits instead of all reading "0".
function axisValue(v: number): string {
  if (v === 0) return "0";
  return Math.abs(v) < 1 ? v.toPrecision(2).replace(/0+$/, "") : v.toLocaleString(undefined, { maximumFractionDigits: 1 });
}

const localFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function localTimes(root: ParentNode): void {
  for (const el of root.querySelectorAll<HTMLTimeElement>("time[datetime]")) {
    const at = new Date(el.dateTime);
    if (Number.isNaN(at.getTime())) continue;
    el.textContent = localFormat.format(at);
    el.title = `UTC: ${at.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC")}`;
  }
}

function drawChart(figure: HTMLElement): void {
  const area = figure.querySelector<HTMLElement>(".chart-area");
  const tableBox = figure.querySelector<HTMLElement>(".chart-table");
  const toggle = figure.querySelector<HTMLButtonElement>("button.chart-toggle");
  if (!area || !tableBox || !toggle) return;
  const data = JSON.parse(figure.dataset.chart ?? "{}") as ChartData;
  const width = () => Math.max(280, area.clientWidth || 600);
  const plot = new uPlot(
    {
      width: width(),
      height: 220,
      series: [{}, ...data.series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2, points: { show: data.x.length < 40 } }))],
      axes: [{}, { label: data.unit, size: 70, values: (_u, splits) => splits.map(axisValue) }],
      legend: { live: true },
    },
    [data.x, ...data.series.map((s) => s.values)] as uPlot.AlignedData,
    area,
  );
  area.setAttribute("aria-hidden", "true");
  new ResizeObserver(() => plot.setSize({ width: width(), height: 220 })).observe(area);
  // The table is the chart's accessible twin: one button switches between them.
  const show = (table: boolean) => {
    tableBox.hidden = !table;
    area.hidden = table;
    toggle.setAttribute("aria-pressed", String(table));
    toggle.textContent = table ? "Show chart" : "Show table";
  };
  toggle.hidden = false;
  toggle.addEventListener("click", () => show(tableBox.hidden));
  show(false);
}

function copyButtons(root: ParentNode): void {
  const status = document.getElementById("live-status");
  for (const button of root.querySelectorAll<HTMLButtonElement>("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      const source = document.getElementById(button.dataset.copy ?? "");
      const text = source instanceof HTMLInputElement ? source.value : (source?.textContent ?? "");
      void navigator.clipboard.writeText(text).then(
        () => {
          button.textContent = "Copied";
          if (status) status.textContent = "Copied to the clipboard.";
        },
        () => {
          if (source instanceof HTMLInputElement) source.select();
          if (status) status.textContent = "Copying was refused: the key is selected, press Ctrl+C.";
        },
      );
    });
  }
}

function confirmations(root: ParentNode): void {
  for (const form of root.querySelectorAll<HTMLFormElement>("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm ?? "Are you sure?")) event.preventDefault();
    });
  }
}

localTimes(document);
for (const figure of document.querySelectorAll<HTMLElement>("figure[data-chart]")) drawChart(figure);
copyButtons(document);
confirmations(document);
