// The portal's shell: who is signed in, the navigation, the views (hash routes).
import { getJSON, post, setCsrf } from "/portal/static/js/api.js";
import { clear, h, notify, parseHash, showError } from "/portal/static/js/dom.js";

const VIEWS = [
  // [route, label, module, service it needs (nav hidden without it)]
  ["jobs", "Job monitor", "jobs.js", "WorkloadManagement/JobMonitoring"],
  ["launch", "Launchpad", "launchpad.js", "WorkloadManagement/JobManager"],
  ["data", "Data", "data.js", "DataManagement/FileCatalog"],
  ["transformations", "Transformations", "transformations.js",
   "Transformation/TransformationManager"],
  ["pilots", "Pilots & sites", "pilots.js", "WorkloadManagement/PilotManager"],
  ["accounting", "Accounting", "accounting.js", "Accounting/ReportGenerator"],
];
const ROUTES = { job: "job.js" };

let session = null;
let cleanup = null;
const main = () => document.getElementById("main");

function available(service) {
  return session && session.services.includes(service);
}

function renderNav(current) {
  const nav = clear(document.getElementById("nav"));
  if (!session || !session.signedIn) return;
  for (const [route, label, , service] of VIEWS) {
    if (!available(service)) continue;
    const here = current === route || (route === "jobs" && current === "job");
    nav.append(h("a", { href: `#/${route}`, "aria-current": here ? "page" : null }, label));
  }
}

function renderWho() {
  const who = clear(document.getElementById("who"));
  if (!session || !session.signedIn) return;
  const select = h("select", { id: "group-select", "aria-label": "Group" },
                   session.groups.map((g) => h("option", { value: g, selected: g === session.group },
                                                g)));
  select.addEventListener("change", async () => {
    try {
      const reply = await post("/portal/api/group", { group: select.value });
      if (reply.redirect) { window.location.assign(reply.redirect); return; }
      notify(`You now act in group ${reply.group}`);
      await start();
    } catch (exc) { select.value = session.group; showError(exc); }
  });
  const out = h("button", { type: "button", id: "sign-out" }, "Sign out");
  out.addEventListener("click", async () => {
    try { await post("/portal/api/logout"); } catch (exc) { showError(exc); }
    session = null;
    window.location.assign("/portal/#/jobs");
    window.location.reload();
  });
  who.append(h("span", { class: "user", title: session.dn || "" }, session.user), select, out);
}

function loginView(info) {
  const root = clear(main());
  const next = encodeURIComponent(window.location.hash || "#/jobs");
  const params = new URLSearchParams(window.location.search);
  const problem = params.get("error") || info.reason;
  const options = h("div", { class: "options" });
  if (info.tokenLogin) {
    options.append(h("a", { class: "button primary", id: "login-token",
                             href: `/portal/login?next=${next}` },
                     "Sign in with your identity provider"));
  }
  if (info.certificateLogin) {
    options.append(h("a", { class: "button" + (info.tokenLogin ? "" : " primary"),
                             id: "login-certificate",
                             href: `/portal/login/certificate?next=${next}` },
                     "Sign in with my browser certificate"));
    options.append(h("p", { class: "muted" }, info.certificate
      ? `Your browser presents the certificate of ${info.certificate}.`
      : "Your browser presented no certificate known here."));
  }
  if (!info.tokenLogin && !info.certificateLogin) {
    options.append(h("p", { class: "error" }, "No sign-in method is enabled on this server."));
  }
  root.append(h("section", { class: "panel login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in to pilotwms"),
    problem ? h("p", { class: "error", id: "login-error", role: "alert" }, problem) : null,
    h("p", {}, "Follow your jobs, launch new ones and browse your data."), options));
}

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* a view's timers only */ } cleanup = null; }
  const { view, parts, params } = parseHash(window.location.hash);
  if (!session || !session.signedIn) return;
  renderNav(view);
  const entry = VIEWS.find(([r]) => r === view);
  const module = entry ? entry[2] : ROUTES[view];
  const root = clear(main());
  if (!module || (entry && !available(entry[3]))) {
    root.append(h("h1", {}, "Not found"), h("p", {}, "This view does not exist here."),
                h("a", { href: "#/jobs" }, "Back to the job monitor"));
    return;
  }
  try {
    const mod = await import(`/portal/static/js/${module}`);
    cleanup = (await mod.render(root, { session, parts, params })) || null;
  } catch (exc) {
    showError(exc);
  }
}

async function start() {
  try {
    const info = await getJSON("/portal/api/session");
    session = info;
    setCsrf(info.csrf);
    renderWho();
    if (!info.signedIn) { renderNav(""); loginView(info); return; }
    if (window.location.search) {  // drop a sign-in error once signed in
      window.history.replaceState(null, "", `/portal/${window.location.hash || "#/jobs"}`);
    }
    await route();
  } catch (exc) {
    clear(main()).append(h("p", { class: "error", role: "alert" }, exc.message));
  }
}

window.addEventListener("hashchange", () => {
  route();
  main().focus({ preventScroll: true });
});
window.addEventListener("portal:signed-out", (event) => {
  if (!session || !session.signedIn) return;
  session = null;
  getJSON("/portal/api/session").then((info) => {
    session = info; renderWho(); renderNav(""); loginView({ ...info, reason: event.detail });
  }, showError);
});
start();
