// Pilots and sites: pilots by site/CE/status (counts and a paged list), a pilot's output
// (administrators), the site mask (Operator/SiteManager change it, with a comment).
import { rpc } from "/portal/static/js/api.js";
import { categoryChart } from "/portal/static/js/charts.js";
import { clear, confirmDialog, h, notify, promptDialog, showError, statusBadge, tabs }
  from "/portal/static/js/dom.js";

const PILOTS = "WorkloadManagement/PilotManager";
const ADMIN = "WorkloadManagement/WMSAdministrator";
const COLUMNS = [["PilotJobReference", "Pilot"], ["GridSite", "Site"], ["DestinationSite", "CE"],
                 ["Queue", "Queue", "hide-narrow"], ["Status", "Status"],
                 ["StatusReason", "Reason", "hide-narrow"], ["SubmissionTime", "Submitted", "hide-narrow"],
                 ["LastUpdateTime", "Last update"]];
const PAGE = 50;

export async function render(root, { session }) {
  const props = session.properties;
  const director = ["Operator", "JobAdministrator", "TrustedHost"].some((p) => props.includes(p));
  const masker = ["Operator", "SiteManager"].some((p) => props.includes(p));
  const state = { site: "", ce: "", status: "", page: 1 };
  const charts = [];

  const summary = h("div", { id: "pilot-summary" }, h("p", { class: "loading" }, "Loading\u2026"));
  const chartBox = h("div", { id: "pilot-chart" });
  const siteSel = h("select", { id: "p-site" }, h("option", { value: "" }, "any"));
  const ceSel = h("select", { id: "p-ce" }, h("option", { value: "" }, "any"));
  const statusSel = h("select", { id: "p-status" }, h("option", { value: "" }, "any"));
  const filters = h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
    h("label", {}, "Site", siteSel), h("label", {}, "CE", ceSel), h("label", {}, "Status", statusSel));
  for (const [el, key] of [[siteSel, "site"], [ceSel, "ce"], [statusSel, "status"]]) {
    el.addEventListener("change", () => { state[key] = el.value; state.page = 1; loadList(); });
  }
  const body = h("tbody", { id: "pilots-body" });
  const pageInfo = h("span", { id: "pilots-page" }, "\u00a0");
  const prev = h("button", { type: "button" }, "\u2190 Previous");
  const next = h("button", { type: "button" }, "Next \u2192");
  prev.addEventListener("click", () => { state.page -= 1; loadList(); });
  next.addEventListener("click", () => { state.page += 1; loadList(); });
  const output = h("section", { class: "panel", id: "pilot-output", hidden: true });
  const list = h("div", {}, filters,
    h("div", { class: "tablewrap" }, h("table", { id: "pilots-table" },
      h("thead", {}, h("tr", {}, COLUMNS.map(([, label, cls]) => h("th", { scope: "col", class: cls || null }, label)),
                     director ? h("th", { scope: "col" }, "Output") : null)), body)),
    h("div", { class: "pager" }, prev, pageInfo, next), output);
  const mask = h("div", { id: "site-mask" }, h("p", { class: "loading" }, "Loading\u2026"));

  const views = { summary: h("div", {}, chartBox, summary), list, mask };
  const { bar } = tabs([["summary", "By site and status"], ["list", "Pilots"], ["mask", "Site mask"]],
    (key) => { for (const [k, el] of Object.entries(views)) el.hidden = k !== key; });
  views.list.hidden = true;
  views.mask.hidden = true;
  root.append(h("h1", {}, "Pilots & sites"), h("section", { class: "panel" }, bar, ...Object.values(views)));

  const filterDict = () => Object.fromEntries(Object.entries({
    GridSite: state.site, DestinationSite: state.ce, Status: state.status }).filter(([, v]) => v));

  async function loadSummary() {
    const counts = await rpc(PILOTS, "getPilotCounters", ["GridSite", "DestinationSite", "Status"], {});
    const sites = [...new Set(counts.map(([v]) => v.GridSite))].sort();
    const ces = [...new Set(counts.map(([v]) => v.DestinationSite))].sort();
    const statuses = [...new Set(counts.map(([v]) => v.Status))].sort();
    for (const [sel, values] of [[siteSel, sites], [ceSel, ces], [statusSel, statuses]]) {
      const keep = sel.value;
      clear(sel).append(h("option", { value: "" }, "any"), ...values.map((v) => h("option", { value: v }, v)));
      sel.value = keep;
    }
    const cell = new Map();
    for (const [v, n] of counts) {
      const key = `${v.GridSite}\u0000${v.Status}`;
      cell.set(key, (cell.get(key) || 0) + n);
    }
    const rows = sites.map((site) => {
      const total = statuses.reduce((n, s) => n + (cell.get(`${site}\u0000${s}`) || 0), 0);
      return h("tr", {}, h("th", { scope: "row" }, site), statuses.map((s) => {
        const n = cell.get(`${site}\u0000${s}`) || 0;
        const b = h("button", { type: "button", class: "linklike", disabled: !n }, String(n));
        b.addEventListener("click", () => {
          Object.assign(state, { site, status: s, ce: "", page: 1 });
          siteSel.value = site; statusSel.value = s; ceSel.value = "";
          document.getElementById("tab-list").click();
          loadList();
        });
        return h("td", { class: "num" }, b);
      }), h("td", { class: "num" }, h("b", {}, total)));
    });
    summary.replaceChildren(sites.length ? h("div", { class: "tablewrap" }, h("table", { id: "pilot-counts" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Site"),
        statuses.map((s) => h("th", { scope: "col", class: "num" }, s)), h("th", { scope: "col", class: "num" }, "Total"))),
      h("tbody", {}, rows))) : h("p", { class: "muted" }, "No pilot was sent yet."));
    for (const c of charts.splice(0)) c.destroy();
    clear(chartBox);
    if (sites.length) {
      charts.push(categoryChart(chartBox, { title: "Pilots by site and status", names: sites,
        series: statuses.map((s) => ({ label: s,
          values: sites.map((site) => cell.get(`${site}\u0000${s}`) || 0) })) }));
    }
  }

  async function loadList() {
    const reply = await rpc(PILOTS, "searchPilots", filterDict(), "PilotID", true, state.page, PAGE);
    body.replaceChildren(...reply.Records.map((p) => h("tr", {},
      COLUMNS.map(([name, , cls]) => h("td", { class: cls || null, title: String(p[name] ?? "") },
        name === "Status" ? statusBadge(p[name]) : String(p[name] ?? ""))),
      director ? h("td", {}, h("button", { type: "button", class: "linklike",
        onclick: () => showOutput(p.PilotJobReference) }, "Output")) : null)));
    if (!reply.Records.length) {
      body.append(h("tr", {}, h("td", { colspan: COLUMNS.length + 1, class: "muted" }, "No pilot.")));
    }
    const pages = Math.max(1, Math.ceil(reply.Total / PAGE));
    pageInfo.textContent = `Page ${state.page} of ${pages} (${reply.Total} pilots)`;
    prev.disabled = state.page <= 1;
    next.disabled = state.page >= pages;
  }

  async function showOutput(ref) {
    output.hidden = false;
    output.replaceChildren(h("p", { class: "loading" }, "Loading\u2026"));
    try {
      const out = await rpc(PILOTS, "getPilotOutput", ref);
      output.replaceChildren(h("h2", {}, `Output of ${ref}`), h("h3", {}, "stdout"),
                             h("pre", { id: "pilot-stdout" }, out.StdOut || "(empty)"),
                             h("h3", {}, "stderr"), h("pre", {}, out.StdErr || "(empty)"));
    } catch (exc) { output.replaceChildren(h("p", { class: "error", role: "alert" }, exc.message)); }
  }

  async function loadMask() {
    const statuses = await rpc(ADMIN, "getSiteMaskStatus");
    const sites = Object.keys(statuses).sort();
    const rows = sites.map((site) => {
      const status = statuses[site];
      const cells = [h("th", { scope: "row" }, site), h("td", {}, statusBadge(status))];
      const history = h("button", { type: "button", class: "linklike" }, "History");
      history.addEventListener("click", async () => {
        try {
          const log = (await rpc(ADMIN, "getSiteMaskLogging", [site]))[site] || [];
          notify(log.length ? `${site}: ${log.map((r) => `${r[1]} ${r[0]} by ${r[2]} (${r[3]})`).join("; ")}`
            : `${site}: no change recorded`);
        } catch (exc) { showError(exc); }
      });
      cells.push(h("td", {}, history));
      if (masker) {
        const ban = status !== "Banned";
        const b = h("button", { type: "button", class: ban ? "danger" : "primary",
                                dataset: { site } }, ban ? "Ban" : "Allow");
        b.addEventListener("click", async () => {
          const comment = await promptDialog(`${ban ? "Ban" : "Allow"} ${site}?`, "Why (kept in the history)");
          if (comment === null) return;
          try {
            await rpc(ADMIN, ban ? "banSite" : "allowSite", site, comment || "No comment");
            notify(`${site} is now ${ban ? "Banned" : "Active"}`);
            loadMask();
          } catch (exc) { showError(exc); }
        });
        cells.push(h("td", {}, b));
      }
      return h("tr", {}, cells);
    });
    const add = masker ? h("button", { type: "button", id: "mask-add" }, "Ban another site") : null;
    add?.addEventListener("click", async () => {
      const site = await promptDialog("Ban a site", "Site name (e.g. LCG.CERN.cern)");
      if (!site) return;
      const comment = await promptDialog(`Ban ${site}?`, "Why (kept in the history)");
      if (comment === null) return;
      if (!await confirmDialog(`Ban ${site}?`, "No job will be matched there.", "Ban")) return;
      try { await rpc(ADMIN, "banSite", site, comment || "No comment"); loadMask(); }
      catch (exc) { showError(exc); }
    });
    mask.replaceChildren(
      h("p", { class: "muted" }, masker ? "You may ban and allow sites." :
        "Only operators and site managers change the mask."),
      sites.length ? h("div", { class: "tablewrap" }, h("table", { id: "mask-table" },
        h("thead", {}, h("tr", {}, ["Site", "Status", "", masker ? "" : null].filter((x) => x !== null)
          .map((x) => h("th", { scope: "col" }, x)))), h("tbody", {}, rows)))
        : h("p", { class: "muted" }, "No site was ever banned or allowed: every site is allowed."),
      add ? h("div", { class: "toolbar" }, add) : null);
  }

  try {
    await Promise.all([loadSummary(), loadList(), loadMask()]);
    root.dataset.loaded = "true";
  } catch (exc) { showError(exc); }
  return () => { for (const c of charts) c.destroy(); };
}
