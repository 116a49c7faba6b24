// Job monitor: filters, server-side paging and sorting (JobMonitoring.search), live counts by
// status (getCounters, read from the job counters), selection with kill/delete/reschedule.
import { rpc, rpcAction } from "/portal/static/js/api.js";
import { clear, confirmDialog, debounce, h, notify, showError, statusBadge }
  from "/portal/static/js/dom.js";

const MONITORING = "WorkloadManagement/JobMonitoring";
const MANAGER = "WorkloadManagement/JobManager";
const STATUSES = ["Submitting", "Received", "Checking", "Staging", "Waiting", "Matched",
                  "Rescheduled", "Running", "Stalled", "Completing", "Completed", "Done",
                  "Failed", "Killed", "Deleted"];
const COLUMNS = [
  ["JobID", "ID", "num"], ["Status", "Status"], ["MinorStatus", "Minor status"],
  ["ApplicationStatus", "Application status", "hide-narrow"], ["Site", "Site"],
  ["JobName", "Name"], ["Owner", "Owner", "hide-narrow"], ["OwnerGroup", "Group", "hide-narrow"],
  ["JobGroup", "Job group", "hide-narrow"], ["SubmissionTime", "Submitted", "hide-narrow"],
  ["LastUpdateTime", "Last update"],
];
const PAGE_SIZES = [25, 50, 100, 200, 500];
const REFRESH_MS = 15000;

function stateFrom(params) {
  const size = Number(params.get("size")) || 50;
  return {
    status: (params.get("status") || "").split(",").filter(Boolean),
    minor: params.get("minor") || "", site: params.get("site") || "",
    owner: params.get("owner") || "", jobGroup: params.get("jobgroup") || "",
    name: params.get("name") || "", from: params.get("from") || "", to: params.get("to") || "",
    sort: params.get("sort") || "JobID", dir: params.get("dir") === "asc" ? "asc" : "desc",
    page: Math.max(1, Number(params.get("page")) || 1),
    size: PAGE_SIZES.includes(size) ? size : 50,
  };
}

function hashOf(state) {
  const p = new URLSearchParams();
  if (state.status.length) p.set("status", state.status.join(","));
  for (const [key, name] of [["minor", "minor"], ["site", "site"], ["owner", "owner"],
                             ["jobGroup", "jobgroup"], ["name", "name"], ["from", "from"],
                             ["to", "to"]]) {
    if (state[key]) p.set(name, state[key]);
  }
  if (state.sort !== "JobID") p.set("sort", state.sort);
  if (state.dir !== "desc") p.set("dir", state.dir);
  if (state.page > 1) p.set("page", String(state.page));
  if (state.size !== 50) p.set("size", String(state.size));
  const q = p.toString();
  return `#/jobs${q ? `?${q}` : ""}`;
}

const dt = (text) => ({ __dCls: "dt", obj: text });

/** Equality filters (answered from the job counters) as a DIRAC condition dict. */
function condition(state) {
  const cond = {};
  if (state.minor) cond.MinorStatus = state.minor;
  if (state.site) cond.Site = state.site;
  if (state.owner) cond.Owner = state.owner;
  if (state.jobGroup) cond.JobGroup = state.jobGroup;
  return cond;
}

export function searchItems(state) {
  const items = Object.entries(condition(state)).map(
    ([parameter, value]) => ({ parameter, operator: "eq", value }));
  if (state.status.length) items.push({ parameter: "Status", operator: "in", values: state.status });
  if (state.name) {
    const pattern = state.name.includes("*") ? state.name.replaceAll("*", "%") : `%${state.name}%`;
    items.push({ parameter: "JobName", operator: "like", value: pattern });
  }
  if (state.from) items.push({ parameter: "SubmissionTime", operator: "ge",
                               value: dt(`${state.from} 00:00:00`) });
  if (state.to) items.push({ parameter: "SubmissionTime", operator: "le",
                             value: dt(`${state.to} 23:59:59`) });
  return items;
}

export async function render(root, { session, params }) {
  const state = stateFrom(params);
  const admin = session.properties.includes("JobAdministrator");
  const shared = admin || session.properties.includes("JobSharing");
  const columns = COLUMNS.filter(([name]) => shared || (name !== "Owner" && name !== "OwnerGroup"));
  const selected = new Set();
  let timer = null;
  let alive = true;

  const go = (changes, keepPage = false) => {
    Object.assign(state, changes);
    if (!keepPage) state.page = 1;
    window.history.replaceState(null, "", hashOf(state));
    selected.clear();
    load();
  };

  // -- filters -------------------------------------------------------------------------------
  const field = (label, input) => h("label", {}, label, input);
  const siteSel = h("select", { id: "f-site" }, h("option", { value: "" }, "any"));
  const groupSel = h("select", { id: "f-jobgroup" }, h("option", { value: "" }, "any"));
  const ownerSel = h("select", { id: "f-owner" }, h("option", { value: "" }, "any"));
  const minorIn = h("input", { id: "f-minor", type: "search", value: state.minor,
                               placeholder: "e.g. Execution Complete" });
  const nameIn = h("input", { id: "f-name", type: "search", value: state.name,
                              placeholder: "part of the name, or a*pattern" });
  const fromIn = h("input", { id: "f-from", type: "date", value: state.from });
  const toIn = h("input", { id: "f-to", type: "date", value: state.to });
  const reset = h("button", { type: "button", id: "f-reset" }, "Clear filters");
  const filters = h("form", { class: "filters panel", role: "search", "aria-label": "Job filters",
                              onsubmit: (e) => e.preventDefault() },
    field("Site", siteSel), field("Job group", groupSel),
    admin ? field("Owner", ownerSel) : null,
    field("Minor status", minorIn), field("Job name", nameIn),
    field("Submitted from", fromIn), field("to", toIn),
    h("div", { class: "actions" }, reset));
  siteSel.addEventListener("change", () => go({ site: siteSel.value }));
  groupSel.addEventListener("change", () => go({ jobGroup: groupSel.value }));
  ownerSel.addEventListener("change", () => go({ owner: ownerSel.value }));
  const typed = debounce(() => go({ minor: minorIn.value.trim(), name: nameIn.value.trim() }), 400);
  minorIn.addEventListener("input", typed);
  nameIn.addEventListener("input", typed);
  fromIn.addEventListener("change", () => go({ from: fromIn.value }));
  toIn.addEventListener("change", () => go({ to: toIn.value }));
  reset.addEventListener("click", () => {
    for (const el of [minorIn, nameIn, fromIn, toIn]) el.value = "";
    for (const el of [siteSel, groupSel, ownerSel]) el.value = "";
    go({ status: [], minor: "", site: "", owner: "", jobGroup: "", name: "", from: "", to: "" });
  });

  // -- counts by status (chips toggle the status filter) --------------------------------------
  const counts = h("div", { class: "counts", id: "status-counts", "aria-label": "Jobs by status",
                            role: "group" });

  // -- toolbar: selection actions, refresh -----------------------------------------------------
  const selInfo = h("span", { id: "selection-info", class: "muted" }, "No job selected");
  const actions = [["kill", "Kill", "killJob"], ["delete", "Delete", "deleteJob"],
                   ["reschedule", "Reschedule", "rescheduleJob"]].map(([id, label, method]) => {
    const b = h("button", { type: "button", id: `action-${id}`, disabled: true,
                            class: id === "reschedule" ? "" : "danger" }, label);
    b.addEventListener("click", () => act(label, method));
    return b;
  });
  const auto = h("input", { type: "checkbox", id: "auto-refresh", checked: true });
  const refreshBtn = h("button", { type: "button", id: "refresh" }, "Refresh");
  refreshBtn.addEventListener("click", () => load());
  const toolbar = h("div", { class: "toolbar" }, selInfo, ...actions, h("span", { class: "spacer" }),
    h("label", { class: "inline", style: null }, h("span", {}, "Auto-refresh"), auto), refreshBtn);

  // -- table ---------------------------------------------------------------------------------
  const allBox = h("input", { type: "checkbox", id: "select-page",
                              "aria-label": "Select every job of this page" });
  const headRow = h("tr", {}, h("th", { scope: "col" }, allBox),
    columns.map(([name, label, cls]) => {
      const sorted = state.sort === name;
      const th = h("th", { scope: "col", class: cls || null,
                           "aria-sort": sorted ? (state.dir === "asc" ? "ascending" : "descending")
                             : "none" });
      const b = h("button", { type: "button", class: "sort", dataset: { column: name } }, label);
      b.addEventListener("click", () => go({ sort: name,
        dir: state.sort === name && state.dir === "desc" ? "asc" : "desc" }, true));
      th.append(b);
      return th;
    }));
  const body = h("tbody", { id: "jobs-body" });
  for (let i = 0; i < Math.min(state.size, 25); i += 1) {
    body.append(h("tr", { class: "skeleton" }, h("td", {}),
                  columns.map(([, , cls]) => h("td", { class: cls || null }))));
  }
  const table = h("table", { id: "jobs-table", "aria-busy": "true" },
                  h("caption", { class: "skip" }, "Jobs"), h("thead", {}, headRow), body);
  const totalEl = h("span", { id: "jobs-total", class: "muted" }, "\u00a0");
  const prev = h("button", { type: "button", id: "page-prev" }, "\u2190 Previous");
  const next = h("button", { type: "button", id: "page-next" }, "Next \u2192");
  const pageEl = h("span", { id: "page-info" }, "\u00a0");
  const sizeSel = h("select", { id: "page-size", "aria-label": "Jobs per page" },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === state.size }, `${n} per page`)));
  prev.addEventListener("click", () => go({ page: state.page - 1 }, true));
  next.addEventListener("click", () => go({ page: state.page + 1 }, true));
  sizeSel.addEventListener("change", () => go({ size: Number(sizeSel.value) }));
  allBox.addEventListener("change", () => {
    for (const box of body.querySelectorAll("input[type=checkbox]")) {
      box.checked = allBox.checked;
      toggle(Number(box.dataset.job), box.checked, box.closest("tr"));
    }
  });

  root.append(h("h1", {}, "Job monitor"), filters, counts, toolbar,
              h("div", { class: "tablewrap" }, table),
              h("div", { class: "pager" }, prev, pageEl, next, sizeSel, totalEl));

  function toggle(id, on, row) {
    if (on) selected.add(id); else selected.delete(id);
    row?.classList.toggle("selected", on);
    selInfo.textContent = selected.size ? `${selected.size} selected` : "No job selected";
    for (const b of actions) b.disabled = selected.size === 0;
  }

  async function act(label, method) {
    const ids = [...selected].sort((a, b) => a - b);
    const shown = ids.length > 8 ? `${ids.slice(0, 8).join(", ")} and ${ids.length - 8} more`
      : ids.join(", ");
    if (!await confirmDialog(`${label} ${ids.length} job${ids.length > 1 ? "s" : ""}?`,
                             `Jobs ${shown}.`, label)) return;
    try {
      const result = await rpcAction(MANAGER, method, ids);
      if (result.ok) notify(`${label}: done for ${ids.length} job(s)`);
      else {
        const e = result.extra;
        const parts = [result.message];
        if (e.NonauthorizedJobIDs?.length) parts.push(`not yours: ${e.NonauthorizedJobIDs.join(", ")}`);
        if (e.InvalidJobIDs?.length) parts.push(`unknown: ${e.InvalidJobIDs.join(", ")}`);
        notify(parts.join("; "), "error");
      }
    } catch (exc) { showError(exc); }
    selected.clear();
    load();
  }

  function fill(select, values, current) {
    const keep = select.value || current;
    clear(select).append(h("option", { value: "" }, "any"));
    for (const v of values) select.append(h("option", { value: v }, v));
    if (keep && !values.includes(keep)) select.append(h("option", { value: keep }, keep));
    select.value = keep || "";
  }

  async function loadOptions() {
    const grouped = async (attr) => (await rpc(MONITORING, "getCounters", [attr], {}))
      .map(([values]) => values[attr]).filter((v) => v !== null && v !== "").sort();
    try {
      const [sites, groups, owners] = await Promise.all([
        grouped("Site"), grouped("JobGroup"), admin ? grouped("Owner") : Promise.resolve([])]);
      fill(siteSel, sites, state.site);
      fill(groupSel, groups, state.jobGroup);
      if (admin) fill(ownerSel, owners, state.owner);
    } catch (exc) { showError(exc); }
  }

  async function loadCounts() {
    const found = await rpc(MONITORING, "getCounters", ["Status"], condition(state));
    const byStatus = new Map(found.map(([values, n]) => [values.Status, n]));
    const order = [...STATUSES.filter((s) => byStatus.has(s)),
                   ...[...byStatus.keys()].filter((s) => !STATUSES.includes(s)).sort()];
    clear(counts);
    if (!order.length) counts.append(h("span", { class: "muted" }, "No jobs"));
    for (const status of order) {
      const on = state.status.includes(status);
      const chip = h("button", { type: "button", class: "chip", "aria-pressed": on ? "true" : "false",
                                 dataset: { status } }, status, h("b", {}, byStatus.get(status)));
      chip.addEventListener("click", () => go({
        status: on ? state.status.filter((s) => s !== status) : [...state.status, status] }));
      counts.append(chip);
    }
  }

  async function loadPage() {
    const reply = await rpc(MONITORING, "search", columns.map(([n]) => n), searchItems(state),
                            [{ parameter: state.sort, direction: state.dir }],
                            state.page, state.size, true, true);
    const names = reply.ParameterNames;
    const at = Object.fromEntries(names.map((n, i) => [n, i]));
    const rows = reply.Records.map((rec) => {
      const id = Number(rec[at.JobID]);
      const box = h("input", { type: "checkbox", dataset: { job: id }, checked: selected.has(id),
                               "aria-label": `Select job ${id}` });
      const tr = h("tr", { class: selected.has(id) ? "selected" : null, dataset: { job: id } },
                   h("td", {}, box));
      box.addEventListener("change", () => toggle(id, box.checked, tr));
      for (const [name, , cls] of columns) {
        const value = rec[at[name]];
        let cell;
        if (name === "JobID") cell = h("a", { href: `#/job/${id}` }, id);
        else if (name === "Status") cell = statusBadge(value);
        else cell = value ?? "";
        tr.append(h("td", { class: cls || null, title: typeof value === "string" ? value : null },
                    cell));
      }
      return tr;
    });
    body.replaceChildren(...rows);
    if (!rows.length) {
      body.append(h("tr", {}, h("td", { colspan: columns.length + 1, class: "muted" },
                                    "No job matches these filters.")));
    }
    allBox.checked = false;
    const total = reply.Total;
    const pages = Math.max(1, Math.ceil(total / state.size));
    totalEl.textContent = `${reply.TotalIsExact ? "" : "at least "}${total} job${total === 1 ? "" : "s"}`;
    pageEl.textContent = `Page ${state.page} of ${reply.TotalIsExact ? pages : `${pages}+`}`;
    prev.disabled = state.page <= 1;
    next.disabled = reply.TotalIsExact ? state.page >= pages : rows.length < state.size;
    table.setAttribute("aria-busy", "false");
    toggle(0, false, null);
  }

  async function load() {
    if (!alive) return;
    clearTimeout(timer);
    table.setAttribute("aria-busy", "true");
    try {
      await Promise.all([loadPage(), loadCounts()]);
      root.dataset.loaded = "true";
    } catch (exc) {
      showError(exc);
    } finally {
      table.setAttribute("aria-busy", "false");
      if (alive && auto.checked) timer = setTimeout(load, REFRESH_MS);
    }
  }

  auto.addEventListener("change", () => { clearTimeout(timer); if (auto.checked) load(); });
  load();
  loadOptions();
  return () => { alive = false; clearTimeout(timer); };
}
