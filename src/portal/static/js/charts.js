// Plots drawn in the browser with uPlot (vendored: js/vendor/uPlot.esm.js, MIT): zoom by
// dragging, values on hover in the legend; double-click resets the zoom.
import uPlot from "/portal/static/js/vendor/uPlot.esm.js";
import { h } from "/portal/static/js/dom.js";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];

const shown = (v, fmt) => (v === null || v === undefined || Number.isNaN(v) ? "--" : fmt(v));
const plain = (v) => (Math.round(Number(v) * 100) / 100).toLocaleString();

/** A time-series chart: x = unix seconds, series = [{label, values, bars?}]; stacked charts
 * draw the running sums but show each series' own value on hover (``fmt`` formats it). */
export function timeChart(container, { title, x, series, yLabel = "", stacked = false,
                                       fmt = plain, step = 0 }) {
  const box = h("div", { class: "chart", role: "img", "aria-label": title });
  container.append(box);
  const width = () => Math.max(280, box.clientWidth || container.clientWidth || 600);
  let data = [x, ...series.map((s) => s.values)];
  if (stacked) {
    const acc = new Array(x.length).fill(0);
    data = [x, ...series.map((s) => s.values.map((v, i) => (acc[i] += Number(v) || 0)))];
  }
  const opts = {
    title, width: width(), height: 260,
    // bars are centred on their interval's start: half an interval of room on both sides
    scales: { x: step && x.length ? { time: true, range: [x[0] - step / 2, x[x.length - 1] + step / 2] }
      : { time: true } },
    axes: [{}, { label: yLabel }],
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: PALETTE[i % PALETTE.length],
      value: (_u, _v, _si, idx) => (idx === null ? "--" : shown(s.values[idx], fmt)),
      fill: stacked ? `${PALETTE[i % PALETTE.length]}33` : undefined,
      paths: s.bars ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined,
      points: { show: x.length < 60 },
    }))],
  };
  const plot = new uPlot(opts, data, box);
  const resize = () => plot.setSize({ width: width(), height: 260 });
  window.addEventListener("resize", resize);
  return { plot, destroy: () => { window.removeEventListener("resize", resize); plot.destroy(); } };
}

/** Bars over categories (x = 0..n-1 with the names as tick labels). */
export function categoryChart(container, { title, names, series, yLabel = "", fmt = plain }) {
  const box = h("div", { class: "chart", role: "img", "aria-label": title });
  container.append(box);
  const x = names.map((_, i) => i);
  const opts = {
    title, width: Math.max(280, container.clientWidth || 600), height: 260,
    scales: { x: { time: false, range: [-0.5, names.length - 0.5] } },
    axes: [{ splits: () => x, values: (_u, ticks) => ticks.map((t) => names[t] ?? "") },
           { label: yLabel }],
    series: [{ label: "", value: (_u, v) => names[v] ?? "" },
             ...series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length],
                                         value: (_u, v) => shown(v, fmt),
                                         fill: `${PALETTE[i % PALETTE.length]}88`,
                                         paths: uPlot.paths.bars({ size: [0.6, 60] }),
                                         points: { show: false } }))],
  };
  const plot = new uPlot(opts, [x, ...series.map((s) => s.values)], box);
  return { plot, destroy: () => plot.destroy() };
}

/** DIRAC's "YYYY-mm-dd HH:MM:SS" (UTC) as unix seconds. */
export function epoch(text) {
  return Date.parse(`${String(text).replace(" ", "T")}Z`) / 1000;
}
