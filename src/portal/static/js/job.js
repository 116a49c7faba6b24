// One job: attributes, parameters, JDL, logging, heartbeats (with a plot), the last lines of
// its output while it runs (the watchdog's StandardOutput parameter), sandboxes, data.
import { download, rpc, rpcAction } from "/portal/static/js/api.js";
import { epoch, timeChart } from "/portal/static/js/charts.js";
import { clear, confirmDialog, h, notify, showError, statusBadge, tabs }
  from "/portal/static/js/dom.js";

const MONITORING = "WorkloadManagement/JobMonitoring";
const MANAGER = "WorkloadManagement/JobManager";
const CATALOG = "DataManagement/FileCatalog";
const ACTIVE = ["Matched", "Running", "Completing", "Stalled"];

function table(headers, rows, id) {
  return h("div", { class: "tablewrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))
      : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "Nothing yet.")))));
}

function attrs(obj, id) {
  if (!Object.keys(obj).length) return h("p", { class: "muted", id }, "Nothing reported yet.");
  return h("dl", { class: "attrs", id }, Object.keys(obj).sort().map((k) => [
    h("dt", {}, k), h("dd", {}, obj[k] === null || obj[k] === undefined ? "" : String(obj[k]))]));
}

async function replicasOf(lfns) {
  if (!lfns.length) return {};
  try {
    const reply = await rpc(CATALOG, "getReplicas", lfns);
    return { ...Object.fromEntries(Object.keys(reply.Failed).map((l) => [l, null])),
             ...reply.Successful };
  } catch { return {}; }
}

function dataTable(lfns, replicas, id) {
  return table(["LFN", "Replicas"], lfns.map((lfn) => {
    const found = replicas[lfn];
    const where = found ? Object.keys(found).map((se) => h("a", {
      href: `/portal/api/se/${encodeURIComponent(se)}${lfn.split("/").map(encodeURIComponent).join("/")}`,
      download: "" }, se)) : [h("span", { class: "muted" }, "no replica known")];
    return [h("a", { href: `#/data?path=${encodeURIComponent(lfn.replace(/\/[^/]*$/, "") || "/")}` },
              lfn), h("span", {}, where.flatMap((a, i) => (i ? [", ", a] : [a])))];
  }), id);
}

export async function render(root, { parts }) {
  const jobId = Number(parts[0]);
  if (!Number.isInteger(jobId) || jobId <= 0) {
    root.append(h("h1", {}, "No such job"), h("a", { href: "#/jobs" }, "Back to the job monitor"));
    return null;
  }
  let alive = true;
  let timer = null;
  const charts = [];
  const title = h("h1", { id: "job-title" }, `Job ${jobId}`);
  const status = h("span", { id: "job-status" });
  const actions = h("div", { class: "toolbar" });
  const panel = h("section", { class: "panel", id: "job-panel", "aria-live": "polite" },
                  h("p", { class: "loading" }, "Loading\u2026"));
  const { bar, select } = tabs([
    ["summary", "Summary"], ["params", "Parameters"], ["jdl", "JDL"], ["logging", "Logging"],
    ["heartbeats", "Heartbeats"], ["output", "Output"], ["data", "Data"],
  ], (key) => show(key));
  root.append(h("p", {}, h("a", { href: "#/jobs" }, "\u2190 Job monitor")),
              h("div", { class: "toolbar" }, title, status), actions, bar, panel);

  let summary = null;
  for (const [label, method] of [["Kill", "killJob"], ["Delete", "deleteJob"],
                                 ["Reschedule", "rescheduleJob"]]) {
    const b = h("button", { type: "button", id: `job-${method}`,
                            class: label === "Reschedule" ? "" : "danger" }, label);
    b.addEventListener("click", async () => {
      if (!await confirmDialog(`${label} job ${jobId}?`, summary?.JobName
        ? `"${summary.JobName}", now ${summary.Status}.` : "", label)) return;
      try {
        const result = await rpcAction(MANAGER, method, [jobId]);
        if (result.ok) notify(`${label}: job ${jobId}`); else notify(result.message, "error");
      } catch (exc) { showError(exc); }
      refresh();
    });
    actions.append(b);
  }
  const sandboxButton = (kind, label) => {
    const b = h("button", { type: "button", id: `download-${kind.toLowerCase()}` }, label);
    b.addEventListener("click", async () => {
      try {
        const size = await download(`/portal/api/jobs/${jobId}/sandbox/${kind}`,
                                    `job${jobId}-${kind.toLowerCase()}.tar.bz2`);
        notify(`${kind} sandbox of job ${jobId} downloaded (${size} bytes)`);
      } catch (exc) { showError(exc); }
    });
    return b;
  };
  actions.append(sandboxButton("Output", "Download output sandbox"),
                 sandboxButton("Input", "Input sandbox"));

  let current = "summary";
  async function show(key) {
    current = key;
    for (const c of charts.splice(0)) c.destroy();
    try {
      const content = await VIEWS[key]();
      if (current === key && alive) panel.replaceChildren(...[content].flat());
    } catch (exc) {
      if (current === key) panel.replaceChildren(h("p", { class: "error", role: "alert" },
                                                     exc.message));
    }
  }

  const parameters = async () => (await rpc(MONITORING, "getJobParameters", jobId))[jobId] || {};

  const VIEWS = {
    summary: async () => attrs(summary || {}, "job-attributes"),
    params: async () => attrs(await parameters(), "job-parameters"),
    jdl: async () => {
      const [jdl, original] = await Promise.all([rpc(MONITORING, "getJobJDL", jobId, false),
                                                 rpc(MONITORING, "getJobJDL", jobId, true)]);
      return [h("h2", {}, "JDL as processed"), h("pre", { id: "job-jdl" }, jdl),
              h("h2", {}, "JDL as submitted"), h("pre", {}, original)];
    },
    logging: async () => {
      const rows = await rpc(MONITORING, "getJobLoggingInfo", jobId);
      return table(["Status", "Minor status", "Application status", "Time (UTC)", "Source"],
                   rows.map((r) => [statusBadge(r[0]), r[1], r[2], r[3], r[4]]), "job-logging");
    },
    heartbeats: async () => {
      const rows = await rpc(MONITORING, "getJobHeartBeatData", jobId);
      const box = h("div", {});
      const byName = new Map();
      for (const [name, value, time] of rows) {
        if (!byName.has(name)) byName.set(name, []);
        byName.get(name).push([epoch(time), Number(value)]);
      }
      const times = [...new Set(rows.map((r) => epoch(r[2])))].sort((a, b) => a - b);
      const pick = (name) => {
        const m = new Map(byName.get(name) || []);
        return times.map((t) => (m.has(t) ? m.get(t) : null));
      };
      const out = [box, table(["Name", "Value", "Time (UTC)"], rows.slice(-200).reverse(),
                              "job-heartbeats")];
      if (times.length > 1) {
        queueMicrotask(() => {
          charts.push(timeChart(box, { title: "CPU consumed (s) and memory (MiB)", x: times,
            series: [{ label: "CPUConsumed", values: pick("CPUConsumed") },
                     { label: "MemoryUsed (MiB)",
                       values: pick("MemoryUsed").map((v) => (v === null ? null : v / 1024)) }] }));
        });
      }
      return out;
    },
    output: async () => {
      const params = await parameters();
      const peek = params.StandardOutput;
      const running = ACTIVE.includes(summary?.Status);
      return [
        h("h2", {}, running ? "Last lines of the output (while running)" : "Last lines seen"),
        peek ? h("pre", { id: "job-peek" }, peek)
          : h("p", { class: "muted", id: "job-peek" },
              running ? "The job has not reported its output yet (every heartbeat does)."
                : "No output was reported while the job ran."),
        h("p", { class: "muted" },
          "The whole output is in the output sandbox once the job is done (button above)."),
      ];
    },
    data: async () => {
      const [inputs, params] = await Promise.all([rpc(MONITORING, "getInputData", jobId),
                                                  parameters()]);
      const outputs = String(params.UploadedOutputData || "").split(",").map((s) => s.trim())
        .filter(Boolean);
      const replicas = await replicasOf([...inputs, ...outputs]);
      return [h("h2", {}, "Input data"),
              inputs.length ? dataTable(inputs, replicas, "job-input-data")
                : h("p", { class: "muted" }, "This job reads no input data."),
              h("h2", {}, "Output data"),
              outputs.length ? dataTable(outputs, replicas, "job-output-data")
                : h("p", { class: "muted" }, "No output data registered (yet).")];
    },
  };

  async function refresh() {
    clearTimeout(timer);
    try {
      summary = await rpc(MONITORING, "getJobSummary", jobId);
      title.textContent = `Job ${jobId}${summary.JobName ? ` \u2014 ${summary.JobName}` : ""}`;
      clear(status).append(statusBadge(summary.Status), " ", summary.MinorStatus || "");
      if (current === "summary" || current === "output" || current === "logging") await show(current);
      root.dataset.loaded = "true";
    } catch (exc) {
      panel.replaceChildren(h("p", { class: "error", role: "alert" }, exc.message));
      return false;
    }
    if (alive && summary && !["Done", "Failed", "Killed", "Deleted"].includes(summary.Status)) {
      timer = setTimeout(refresh, 10000);
    }
    return true;
  }
  if (await refresh()) select("summary");
  else { bar.hidden = true; actions.hidden = true; }
  return () => { alive = false; clearTimeout(timer); for (const c of charts) c.destroy(); };
}
