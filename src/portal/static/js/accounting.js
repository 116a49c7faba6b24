// Accounting and monitoring: reports of the report services (DIRAC's getReport: data
// {group: {epoch: value}}) drawn in the browser (uPlot: zoom by dragging, values on hover),
// for a chosen period, grouping and filter, with the totals as a table.
import { rpc } from "/portal/static/js/api.js";
import { categoryChart, timeChart } from "/portal/static/js/charts.js";
import { clear, fmtBytes, h, showError } from "/portal/static/js/dom.js";

const SOURCES = [
  ["Accounting/ReportGenerator", "Job", "Jobs (accounting)"],
  ["Accounting/ReportGenerator", "Pilot", "Pilots (accounting)"],
  ["Accounting/ReportGenerator", "DataOperation", "Data operations (accounting)"],
  ["Monitoring/Monitoring", "WMSHistory", "Jobs in the WMS (monitoring)"],
  ["Monitoring/Monitoring", "PilotsHistory", "Pilots in the WMS (monitoring)"],
];
const PRESETS = [
  ["Jobs by site", "Job", "NumberOfJobs", "Site"],
  ["CPU by user", "Job", "CPUUsage", "User"],
  ["Failure reasons", "Job", "TotalNumberOfJobs", "FinalMinorStatus", { FinalMajorStatus: ["Failed"] }],
  ["Efficiency by site", "Job", "CPUEfficiency", "Site"],
];
const PERIODS = [["24h", "Last 24 hours", 1], ["7d", "Last 7 days", 7], ["30d", "Last 30 days", 30],
                 ["365d", "Last year", 365], ["custom", "Between dates", 0]];

//: what a type shows first (its first match)
const DEFAULT_REPORTS = ["NumberOfJobs", "NumberOfPilots", "DataTransferred", "Requests"];
// "CPUEfficiency" -> "CPU efficiency", "NumberOfJobs" -> "Number of jobs"
const spaced = (name) => name.replace(/([a-z0-9])([A-Z])/g, "$1 $2")
  .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2").split(" ")
  .map((w, i) => (i && !/^[A-Z0-9]+$/.test(w) ? w.toLowerCase() : w)).join(" ");
const pad = (n) => String(n).padStart(2, "0");
const diracTime = (d) => ({ __dCls: "dt", obj: `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-`
  + `${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}` });

export async function render(root, { session }) {
  const sources = SOURCES.filter(([service]) => session.services.includes(service));
  const charts = [];
  const sourceSel = h("select", { id: "acc-type" },
    sources.map(([service, type, label]) => h("option", { value: `${service}|${type}` }, label)));
  const reportSel = h("select", { id: "acc-report" });
  const groupSel = h("select", { id: "acc-grouping" });
  const periodSel = h("select", { id: "acc-period" },
    PERIODS.map(([key, label]) => h("option", { value: key, selected: key === "7d" }, label)));
  const fromIn = h("input", { type: "date", id: "acc-from" });
  const toIn = h("input", { type: "date", id: "acc-to" });
  const fromLabel = h("label", { hidden: true }, "From", fromIn);
  const toLabel = h("label", { hidden: true }, "To", toIn);
  const filterKey = h("select", { id: "acc-filter-key" }, h("option", { value: "" }, "no filter"));
  const filterVal = h("select", { id: "acc-filter-value", multiple: true, size: 3 });
  const draw = h("button", { type: "submit", class: "primary", id: "acc-draw" }, "Plot");
  const presets = h("div", { class: "toolbar", id: "acc-presets" }, PRESETS
    .filter(([, type]) => sources.some(([, t]) => t === type))
    .map(([label, type, report, grouping, cond]) => {
      const b = h("button", { type: "button" }, label);
      b.addEventListener("click", async () => {
        const source = sources.find(([, t]) => t === type);
        sourceSel.value = `${source[0]}|${type}`;
        await loadType();
        reportSel.value = report;
        groupSel.value = grouping;
        // the preset's filter goes in the form, so what is drawn is what the form says
        const [key, values] = Object.entries(cond || {})[0] || ["", []];
        filterKey.value = key;
        fillValues(values);
        plot({}, label);
      });
      return b;
    }));
  const chartBox = h("div", { id: "acc-chart", "aria-live": "polite" });
  const totals = h("div", { id: "acc-totals" });
  const form = h("form", { class: "filters panel", onsubmit: (e) => { e.preventDefault(); plot(); } },
    h("label", {}, "Records", sourceSel), h("label", {}, "Report", reportSel),
    h("label", {}, "Group by", groupSel), h("label", {}, "Period", periodSel),
    fromLabel, toLabel,
    h("label", {}, "Filter on", filterKey), h("label", {}, "Values", filterVal),
    h("div", { class: "actions" }, draw));
  root.append(h("h1", {}, "Accounting and monitoring"), presets, form,
              h("section", { class: "panel" }, chartBox, totals));
  if (!sources.length) {
    clear(root).append(h("h1", {}, "Accounting"), h("p", {}, "No report service here."));
    return null;
  }
  let keyValues = {};

  periodSel.addEventListener("change", () => {
    fromLabel.hidden = toLabel.hidden = periodSel.value !== "custom";
  });
  sourceSel.addEventListener("change", loadType);
  function fillValues(picked = []) {
    const known = [...new Set([...(keyValues[filterKey.value] || []), ...picked])].sort();
    clear(filterVal).append(...known.map((v) => h("option", { value: v,
                                                            selected: picked.includes(v) }, v)));
  }
  filterKey.addEventListener("change", () => fillValues());

  function chosen() {
    const [service, type] = sourceSel.value.split("|");
    return { service, type };
  }

  async function loadType() {
    const { service, type } = chosen();
    draw.disabled = true;  // no report of one type drawn with the form of another
    try {
      const [reports, values] = await Promise.all([rpc(service, "listReports", type),
                                                   rpc(service, "listUniqueKeyValues", type)]);
      // listReports gives DIRAC's names (a list); titles when a service gives a mapping
      const names = Array.isArray(reports) ? reports : Object.keys(reports);
      const [report, grouping] = [reportSel.value, groupSel.value];
      clear(reportSel).append(...names.map((n) => h("option", { value: n },
        Array.isArray(reports) ? spaced(n) : `${reports[n]} (${n})`)));
      reportSel.value = names.includes(report) ? report
        : names.find((n) => DEFAULT_REPORTS.includes(n)) || names[0] || "";
      keyValues = values;
      const keys = Object.keys(values).sort();
      clear(groupSel).append(...keys.map((k) => h("option", { value: k }, k)));
      groupSel.value = keys.includes(grouping) ? grouping : keys.includes("Site") ? "Site"
        : keys[0] || "";
      clear(filterKey).append(h("option", { value: "" }, "no filter"),
                              ...keys.map((k) => h("option", { value: k }, k)));
      clear(filterVal);
    } catch (exc) { showError(exc); } finally { draw.disabled = false; }
  }

  function period() {
    const now = new Date();
    if (periodSel.value === "custom" && fromIn.value && toIn.value) {
      return [new Date(`${fromIn.value}T00:00:00Z`), new Date(`${toIn.value}T23:59:59Z`)];
    }
    const days = PERIODS.find(([k]) => k === periodSel.value)?.[2] || 7;
    return [new Date(now.getTime() - days * 86400e3), now];
  }

  async function plot(extraCond = {}, title = "") {
    const { service, type } = chosen();
    const [start, end] = period();
    const cond = { ...extraCond };
    const picked = [...filterVal.selectedOptions].map((o) => o.value);
    if (filterKey.value && picked.length) cond[filterKey.value] = picked;
    draw.disabled = true;
    try {
      const report = await rpc(service, "getReport", {
        typeName: type, reportName: reportSel.value, startTime: diracTime(start),
        endTime: diracTime(end), condDict: cond, grouping: groupSel.value, extraArgs: {} });
      show(report, title);
      // what is drawn, for people using assistive tools and for the tests
      Object.assign(chartBox.dataset, { report: `${type}/${report.report}/${report.grouping}`,
                                        kind: report.kind });
      root.dataset.loaded = "true";
    } catch (exc) { showError(exc); } finally { draw.disabled = false; }
  }

  function show(report, name = "") {
    for (const c of charts.splice(0)) c.destroy();
    clear(chartBox);
    clear(totals);
    const unit = report.unit || "";
    const title = `${name || report.title || reportSel.value}${unit ? ` (${unit})` : ""}`;
    const groups = Object.keys(report.data || {}).sort();
    if (!groups.length) {
      chartBox.append(h("p", { class: "muted", id: "acc-empty" }, "No record in this period."));
      return;
    }
    const timed = groups.some((g) => report.data[g] && typeof report.data[g] === "object");
    const fmt = (v) => (unit === "bytes" ? fmtBytes(v) : (Math.round(v * 100) / 100).toLocaleString());
    // the service's own totals: sums for bars, the last value of cumulative series, the
    // overall ratio of quality reports (not an average of the intervals' ratios)
    const totalsOf = report.totals || {};
    const sums = {};
    if (timed) {
      const times = [...new Set(groups.flatMap((g) => Object.keys(report.data[g]).map(Number)))]
        .sort((a, b) => a - b);
      const series = groups.map((g) => ({ label: g, bars: report.kind === "bars",
        values: times.map((t) => { const v = report.data[g][String(t)]; return v === undefined ? null : Number(v); }) }));
      for (const s of series) sums[s.label] = s.values.reduce((n, v) => n + (v || 0), 0);
      charts.push(timeChart(chartBox, { title, x: times, series, yLabel: unit, fmt,
                                        step: report.kind === "bars" ? Number(report.granularity) || 0 : 0,
                                        stacked: report.kind === "bars" || report.kind === "cumulative" }));
    } else {
      for (const g of groups) sums[g] = Number(report.data[g]);
      charts.push(categoryChart(chartBox, { title, names: groups,
        series: [{ label: unit || "value", values: groups.map((g) => sums[g]) }], yLabel: unit, fmt }));
    }
    const label = { quality: "Over the period", cumulative: "At the end" }[report.kind] || "Total";
    totals.append(h("div", { class: "tablewrap" }, h("table", { id: "acc-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, groupSel.value), h("th", { scope: "col", class: "num" }, label))),
      h("tbody", {}, groups.map((g) => {
        const v = g in totalsOf ? Number(totalsOf[g]) : sums[g];
        return h("tr", { dataset: { group: g } }, h("td", {}, g), h("td", { class: "num" }, fmt(v)));
      })))));
  }

  await loadType();
  await plot();
  return () => { for (const c of charts) c.destroy(); };
}
