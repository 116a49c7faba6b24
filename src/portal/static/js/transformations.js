// Transformations and productions: list, status, files and tasks by status, start / stop /
// extend (the services decide who may: ProductionManagement, ProductionSharing for the
// author's group, ProductionUser for the author; a refusal is shown with the service's reason).
// Replies as Transformation/TransformationManager gives them: getTransformationStats
// {status: n, Total}, getTransformationTaskStats {status: n, TotalCreated},
// getTransformationFiles a JEncoded {OK, Value} text (as DIRAC), tasks' ExternalStatus/ID.
import { rpc } from "/portal/static/js/api.js";
import { clear, confirmDialog, h, notify, promptDialog, showError, statusBadge, tabs }
  from "/portal/static/js/dom.js";

const TS = "Transformation/TransformationManager";
const PM = "Production/ProductionManager";
const COLUMNS = [["TransformationID", "ID"], ["TransformationName", "Name"], ["Type", "Type"],
                 ["Status", "Status"], ["Plugin", "Plugin", "hide-narrow"],
                 ["TransformationGroup", "Group", "hide-narrow"], ["CreationDate", "Created", "hide-narrow"],
                 ["LastUpdate", "Last update"]];

function table(id, headers, rows) {
  return h("div", { class: "tablewrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, headers.map(([label, cls]) => h("th", { scope: "col", class: cls || null }, label)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "None.")))));
}

function counts(id, stats, totalKey = "Total") {
  const keys = Object.keys(stats || {}).filter((k) => k !== totalKey).sort();
  const total = stats ? stats[totalKey] : undefined;
  return h("div", { class: "counts", id }, keys.length ? keys.map((k) =>
    h("span", { class: "chip", dataset: { status: k } }, k, h("b", {}, stats[k])))
    : h("span", { class: "muted" }, "none"),
    total !== undefined ? h("span", { class: "chip", dataset: { status: "Total" } }, "Total",
                            h("b", {}, total)) : null);
}

// which buttons make sense in a status (transformation.logic.states.TRANSITIONS; the service
// still decides)
const STARTABLE = new Set(["New", "ValidatingInput", "Flush", "Stopped", "Completing",
                           "ValidatingOutput", "Completed"]);
const STOPPABLE = new Set(["New", "ValidatingInput", "Active", "Flush", "Completing",
                           "ValidatingOutput"]);
const EXTENDABLE = new Set(["New", "Active", "Stopped", "Flush"]);

function refusal(label, exc) {
  return exc && exc.cls === "NotAuthorizedError"
    ? Object.assign(new Error(`${label} refused: ${exc.message}`), { needsLogin: false }) : exc;
}

const jencoded = (value) => (typeof value === "string"
  ? JSON.parse(value, (_k, v) => (v && typeof v === "object" && "__dCls" in v ? v.obj : v)).Value : value);

export async function render(root, { session }) {
  const withProductions = session.services.includes(PM);
  const list = h("div", { id: "transformations" }, h("p", { class: "loading" }, "Loading\u2026"));
  const details = h("section", { class: "panel", id: "transformation-details", hidden: true });
  const statusSel = h("select", { id: "t-status" }, ["", "New", "ValidatingInput", "Active", "Flush",
    "Stopped", "Completing", "ValidatingOutput", "Completed", "Archived", "Cleaning", "Cleaned",
    "TransformationCleaned"].map((s) =>
    h("option", { value: s }, s || "any")));
  statusSel.addEventListener("change", loadList);
  const transPanel = h("div", {}, h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
    h("label", {}, "Status", statusSel)), list, details);
  const prodPanel = h("div", { id: "productions", hidden: true });
  const parts = [["transformations", "Transformations"]];
  if (withProductions) parts.push(["productions", "Productions"]);
  const { bar, select } = tabs(parts, (key) => {
    transPanel.hidden = key !== "transformations";
    prodPanel.hidden = key !== "productions";
    if (key === "productions") loadProductions();
  });
  root.append(h("h1", {}, "Transformations"), h("section", { class: "panel" }, bar, transPanel, prodPanel));

  async function loadList() {
    try {
      const cond = statusSel.value ? { Status: statusSel.value } : {};
      const rows = await rpc(TS, "getTransformations", cond, null, null, "CreationDate",
                             "TransformationID", 500);
      list.replaceChildren(table("transformations-table", COLUMNS.map(([, l, c]) => [l, c]),
        rows.map((t) => h("tr", { dataset: { id: t.TransformationID } }, COLUMNS.map(([k, , c]) =>
          h("td", { class: c || null }, k === "TransformationID"
            ? h("button", { type: "button", class: "linklike", onclick: () => open(t.TransformationID) }, t[k])
            : k === "Status" ? statusBadge(t[k]) : String(t[k] ?? "")))))));
      root.dataset.loaded = "true";
    } catch (exc) { showError(exc); }
  }

  async function act(id, label, call) {
    if (!await confirmDialog(`${label} transformation ${id}?`, "", label, label !== "Start")) return;
    try { await call(); notify(`${label}: transformation ${id}`); open(id); loadList(); }
    catch (exc) { showError(refusal(label, exc)); }
  }

  async function open(id) {
    details.hidden = false;
    details.replaceChildren(h("p", { class: "loading" }, "Loading\u2026"));
    try {
      const [info, fileStats, taskStats, files, tasks] = await Promise.all([
        rpc(TS, "getTransformation", id, true), rpc(TS, "getTransformationStats", id),
        rpc(TS, "getTransformationTaskStats", id),
        rpc(TS, "getTransformationFiles", { TransformationID: id }, null, null, "LastUpdate", null, 100),
        rpc(TS, "getTransformationTasks", { TransformationID: id }, null, null, "CreationTime", null, 100)]);
      const start = h("button", { type: "button", class: "primary", id: "t-start",
                                  disabled: !STARTABLE.has(info.Status) }, "Start");
      const stop = h("button", { type: "button", class: "danger", id: "t-stop",
                                 disabled: !STOPPABLE.has(info.Status) }, "Stop");
      const extend = h("button", { type: "button", id: "t-extend",
                                   disabled: !EXTENDABLE.has(info.Status) }, "Extend");
      start.addEventListener("click", () => act(id, "Start", () => rpc(TS, "setTransformationParameter", id, "Status", "Active")));
      stop.addEventListener("click", () => act(id, "Stop", () => rpc(TS, "setTransformationParameter", id, "Status", "Stopped")));
      extend.addEventListener("click", async () => {
        const n = await promptDialog(`Extend transformation ${id}`, "Number of new tasks");
        if (!n) return;
        if (!/^[0-9]+$/.test(n)) { showError(new Error("the number of tasks must be a whole number")); return; }
        try { const made = await rpc(TS, "extendTransformation", id, Number(n)); notify(`${made.length} task(s) added`); open(id); }
        catch (exc) { showError(refusal("Extend", exc)); }
      });
      details.replaceChildren(
        h("h2", { id: "t-title" }, `${info.TransformationID} \u2014 ${info.TransformationName}`),
        h("div", { class: "toolbar" }, statusBadge(info.Status), start, stop, extend),
        h("dl", { class: "attrs" }, ["Type", "Plugin", "GroupSize", "AgentType", "FileMask",
          "TransformationGroup", "Description", "MaxNumberOfTasks", "Author", "AuthorGroup"].filter((k) => k in info)
          .map((k) => [h("dt", {}, k), h("dd", {}, String(info[k] ?? ""))])),
        h("h3", {}, "Files by status"), counts("t-file-stats", fileStats),
        h("h3", {}, "Tasks by status"), counts("t-task-stats", taskStats, "TotalCreated"),
        h("h3", {}, `Files (the first ${Math.min(100, fileStats.Total || 0)} of ${fileStats.Total || 0})`),
        table("t-files", [["LFN"], ["Status"], ["Task"], ["Last update"]], jencoded(files).map((f) =>
          h("tr", {}, h("td", {}, f.LFN ?? ""), h("td", {}, statusBadge(f.Status)), h("td", {}, String(f.TaskID ?? "")),
            h("td", {}, String(f.LastUpdate ?? ""))))),
        h("h3", {}, `Tasks (the first ${Math.min(100, taskStats.TotalCreated || 0)} of ${taskStats.TotalCreated || 0})`),
        table("t-tasks", [["Task"], ["Status"], ["WMS job"], ["Target SE"], ["Created"]], tasks.map((t) =>
          h("tr", {}, h("td", {}, String(t.TaskID)), h("td", {}, statusBadge(t.ExternalStatus)),
            h("td", {}, t.ExternalID && Number(t.ExternalID) > 0
              ? h("a", { href: `#/job/${Number(t.ExternalID)}` }, String(t.ExternalID)) : String(t.ExternalID ?? "")),
            h("td", {}, String(t.TargetSE ?? "")), h("td", {}, String(t.CreationTime ?? ""))))));
    } catch (exc) { details.replaceChildren(h("p", { class: "error", role: "alert" }, exc.message)); }
  }

  async function loadProductions() {
    try {
      const rows = await rpc(PM, "getProductions", {});
      prodPanel.replaceChildren(table("productions-table", [["ID"], ["Name"], ["Status"], ["Steps"],
        ["Author", "hide-narrow"], ["Created", "hide-narrow"], [""]],
        rows.map((p) => {
          const id = p.ProductionID;
          const buttons = [["Start", "startProduction", "primary", ["New", "Stopped"]],
                           ["Stop", "stopProduction", "danger", ["Active"]]]
            .map(([label, method, cls, from]) => {
              const b = h("button", { type: "button", class: cls,
                                      disabled: !from.includes(p.Status) }, label);
              b.addEventListener("click", async () => {
                if (!await confirmDialog(`${label} production ${id}?`, "", label, cls === "danger")) return;
                try { await rpc(PM, method, id); notify(`${label}: production ${id}`); loadProductions(); }
                catch (exc) { showError(refusal(label, exc)); }
              });
              return b;
            });
          const steps = (p.Steps || []).map((st) => h("button", {
            type: "button", class: "linklike", title: `transformation ${st.TransformationID}`,
            onclick: () => { select("transformations"); open(st.TransformationID); } },
            `${st.Name ?? st.StepName ?? ""} (${st.Status ?? ""})`));
          return h("tr", { dataset: { id } }, h("td", {}, String(id)),
                   h("td", {}, String(p.ProductionName ?? "")), h("td", {}, statusBadge(p.Status)),
                   h("td", { class: "steps" }, steps),
                   h("td", { class: "hide-narrow" }, String(p.Author ?? "")),
                   h("td", { class: "hide-narrow" }, String(p.CreationDate ?? "")), h("td", {}, buttons));
        })));
    } catch (exc) { prodPanel.replaceChildren(h("p", { class: "error" }, exc.message)); }
  }

  await loadList();
  return null;
}
