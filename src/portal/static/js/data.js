// Data: the file catalog (directories, files, replicas, metadata, sizes), metadata search,
// streamed upload (with progress and an adler32 checksum computed in the browser) and
// download through this server's disk SEs, datasets.
import { rpc, upload } from "/portal/static/js/api.js";
import { clear, fmtBytes, h, notify, showError, tabs } from "/portal/static/js/dom.js";

const CATALOG = "DataManagement/FileCatalog";
const SE_SERVICE = "DataManagement/StorageElement";
const OPS = [">=", "<=", "!=", ">", "<", "="];

const join = (dir, name) => `${dir.replace(/\/+$/, "")}/${name}`;
const base = (path) => path.replace(/\/+$/, "").split("/").pop() || "/";
const parent = (path) => path.replace(/\/+$/, "").replace(/\/[^/]*$/, "") || "/";
export const seURL = (se, lfn) =>
  `/portal/api/se/${encodeURIComponent(se)}${lfn.split("/").map(encodeURIComponent).join("/")}`;

/** DIRAC's query terms ("run>=3 kind=raw,reco") as a metaQuery (as dfind parses them). */
export function parseQuery(text, types) {
  const query = {};
  for (const term of text.trim().split(/\s+/).filter(Boolean)) {
    const op = OPS.find((o) => term.includes(o));
    if (!op) throw new Error(`illegal query term ${term}: use name=value, name>value, ...`);
    const at = term.indexOf(op);
    const name = term.slice(0, at);
    const raw = term.slice(at + op.length).replace(/["']/g, "");
    if (!name) throw new Error(`illegal query term ${term}`);
    const kind = (types[name] || (["Size", "UID", "GID"].includes(name) ? "INT" : "VARCHAR"))
      .toLowerCase();
    const typed = (v) => {
      if (v === "Any" || v === "Missing") return v;
      if (kind.startsWith("int") || kind.startsWith("float")) {
        const n = Number(v);
        if (Number.isNaN(n)) throw new Error(`${name} needs a number, not ${v}`);
        return n;
      }
      return v;
    };
    let value = raw.includes(",")
      ? { [{ "=": "in", "!=": "nin" }[op] || op]: raw.split(",").map(typed) } : typed(raw);
    if (op !== "=" && !raw.includes(",")) value = { [op]: value };
    if (query[name] && typeof query[name] === "object" && typeof value === "object") {
      Object.assign(query[name], value);
    } else query[name] = value;
  }
  return query;
}

/** Adler-32 of a File, read in 4 MiB pieces (8 hex digits, as the SEs check). */
export async function adler32(file, onProgress) {
  let a = 1, b = 0;
  const MOD = 65521, STEP = 4 * 1024 * 1024;
  for (let offset = 0; offset < file.size; offset += STEP) {
    const bytes = new Uint8Array(await file.slice(offset, offset + STEP).arrayBuffer());
    for (let i = 0; i < bytes.length;) {
      const end = Math.min(bytes.length, i + 3800);  // no overflow before the modulo
      for (; i < end; i += 1) { a += bytes[i]; b += a; }
      a %= MOD; b %= MOD;
    }
    onProgress?.(Math.min(file.size, offset + STEP), file.size);
  }
  return (((b << 16) | a) >>> 0).toString(16).padStart(8, "0");
}

export async function render(root, { session, params }) {
  const home = `/${session.vo}/user/${session.user[0]}/${session.user}`;
  let path = params.get("path") || home;
  let fields = {};
  let ses = [];

  const crumbs = h("nav", { class: "crumbs", "aria-label": "Directory" });
  const goInput = h("input", { id: "path-input", type: "text", value: path,
                               "aria-label": "Catalog path" });
  const goBtn = h("button", { type: "submit" }, "Go");
  const goForm = h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); open(goInput.value.trim() || "/"); } },
                   goInput, goBtn, h("button", { type: "button", id: "go-home",
                                                 onclick: () => open(home) }, "Home"));
  const listing = h("div", { id: "catalog-listing" }, h("p", { class: "loading" }, "Loading\u2026"));
  const details = h("section", { class: "panel", id: "entry-details", hidden: true });
  const dirInfo = h("p", { class: "muted", id: "dir-info" }, "\u00a0");
  const dirMetaEl = h("p", { id: "dir-metadata" });

  // -- upload ------------------------------------------------------------------------------
  const seSel = h("select", { id: "upload-se" });
  const fileIn = h("input", { type: "file", id: "upload-file" });
  const upBtn = h("button", { type: "button", class: "primary", id: "upload-start" }, "Upload");
  const upProgress = h("progress", { id: "upload-progress", max: "1", value: "0" });
  const upInfo = h("p", { class: "muted", id: "upload-info" }, "\u00a0");
  upBtn.addEventListener("click", async () => {
    const file = fileIn.files[0];
    if (!file) { notify("Choose a file to upload first", "error"); return; }
    const lfn = join(path, file.name);
    upBtn.disabled = true;
    try {
      upInfo.textContent = "Computing the checksum\u2026";
      const checksum = await adler32(file, (done, total) => {
        upProgress.max = total * 2; upProgress.value = done; });
      await rpc(SE_SERVICE, "checkUpload", seSel.value, lfn, file.size);
      upInfo.textContent = `Uploading ${file.name} to ${seSel.value}\u2026`;
      await upload(`${seURL(seSel.value, lfn)}?register=1`, file, {
        method: "PUT", headers: { "X-Checksum-Adler32": checksum },
        onProgress: (done, total) => { upProgress.max = total * 2; upProgress.value = total + done; } });
      upProgress.value = upProgress.max;
      upInfo.textContent = `${lfn} stored on ${seSel.value} and registered (adler32 ${checksum}).`;
      notify(`Uploaded ${file.name}`);
      open(path);
    } catch (exc) {
      upInfo.textContent = "The upload failed.";
      showError(exc);
    } finally { upBtn.disabled = false; }
  });

  // -- metadata search ---------------------------------------------------------------------
  const queryIn = h("input", { id: "meta-query", type: "search", placeholder: "run>=3 kind=raw,reco",
                               "aria-describedby": "meta-fields" });
  const fieldsInfo = h("p", { class: "muted", id: "meta-fields" }, "\u00a0");
  const found = h("div", { id: "meta-results" });
  const searchForm = h("form", { class: "toolbar", role: "search", onsubmit: async (e) => {
    e.preventDefault();
    clear(found);
    try {
      const query = parseQuery(queryIn.value, fields);
      const lfns = await rpc(CATALOG, "findFilesByMetadata", query, path);
      found.append(h("p", {}, `${lfns.length} file(s) under ${path}`),
        h("ul", {}, lfns.slice(0, 500).map((lfn) => h("li", {}, h("button", { type: "button",
          class: "linklike", onclick: () => showFile(lfn) }, lfn)))));
    } catch (exc) { showError(exc); }
  } }, h("label", {}, "Metadata query (under the current directory)", queryIn),
       h("button", { type: "submit", id: "meta-search" }, "Find files"));

  // -- datasets ----------------------------------------------------------------------------
  const datasets = h("div", { id: "datasets" });
  const datasetFiles = h("div", { id: "dataset-files" });

  const browse = h("div", {}, crumbs, goForm, dirInfo, dirMetaEl, listing, details);
  const uploadPanel = h("div", { hidden: true },
    h("p", {}, "The file goes to the current directory, streamed to the storage element and " +
               "registered in the catalog with its adler32 checksum."),
    h("div", { class: "form" }, h("label", {}, "Storage element", seSel),
      h("label", {}, "File", fileIn)), h("div", { class: "toolbar" }, upBtn), upProgress, upInfo);
  const searchPanel = h("div", { hidden: true }, searchForm, fieldsInfo, found);
  const datasetPanel = h("div", { hidden: true }, datasets, datasetFiles);
  const panels = { browse, upload: uploadPanel, search: searchPanel, datasets: datasetPanel };
  const { bar } = tabs([["browse", "Browse"], ["upload", "Upload"], ["search", "Metadata search"],
                        ["datasets", "Datasets"]], (key) => {
    for (const [k, el] of Object.entries(panels)) el.hidden = k !== key;
  });
  root.append(h("h1", {}, "Data"), h("section", { class: "panel" }, bar, ...Object.values(panels)));

  function renderCrumbs() {
    clear(crumbs);
    const parts = path.split("/").filter(Boolean);
    crumbs.append(h("button", { type: "button", onclick: () => open("/") }, "/"));
    parts.forEach((part, i) => {
      const target = `/${parts.slice(0, i + 1).join("/")}`;
      crumbs.append(h("button", { type: "button", onclick: () => open(target) }, part),
                    i < parts.length - 1 ? "/" : "");
    });
  }

  async function open(target) {
    path = target.replace(/\/+$/, "") || "/";
    goInput.value = path;
    window.history.replaceState(null, "", `#/data?path=${encodeURIComponent(path)}`);
    renderCrumbs();
    details.hidden = true;
    listing.setAttribute("aria-busy", "true");
    try {
      const reply = await rpc(CATALOG, "listDirectory", [path], true);
      if (path in reply.Failed) {
        listing.replaceChildren(h("p", { class: "error", role: "alert" },
                                  `${path}: ${reply.Failed[path]}`));
        if (path === home) listing.append(h("p", { class: "muted" },
          "Your home directory is made the first time you write there."));
        return;
      }
      const entry = reply.Successful[path];
      const rows = [];
      if (path !== "/") {
        rows.push(h("tr", {}, h("td", {}, h("button", { type: "button", class: "linklike",
          onclick: () => open(parent(path)) }, "..")), h("td", {}), h("td", {}), h("td", {}),
          h("td", {}), h("td", {})));
      }
      for (const [sub, meta] of Object.entries(entry.SubDirs).sort()) {
        rows.push(h("tr", { dataset: { kind: "dir" } },
          h("td", {}, h("button", { type: "button", class: "linklike dir",
                                     onclick: () => open(sub) }, `${base(sub)}/`)),
          h("td", { class: "num" }, ""), h("td", {}, meta.Owner || ""),
          h("td", { class: "hide-narrow" }, meta.OwnerGroup || ""),
          h("td", { class: "hide-narrow" }, meta.Mode !== undefined ? Number(meta.Mode).toString(8) : ""),
          h("td", { class: "hide-narrow" }, meta.ModificationDate || "")));
      }
      for (const [lfn, info] of Object.entries(entry.Files).sort()) {
        const m = info.MetaData || {};
        const reps = Object.keys(info.Replicas || {});
        rows.push(h("tr", { dataset: { kind: "file" } },
          h("td", {}, h("button", { type: "button", class: "linklike file",
                                     onclick: () => showFile(lfn) }, base(lfn))),
          h("td", { class: "num" }, fmtBytes(m.Size)), h("td", {}, m.Owner || ""),
          h("td", { class: "hide-narrow" }, m.OwnerGroup || ""),
          h("td", { class: "hide-narrow" }, m.Mode !== undefined ? Number(m.Mode).toString(8) : ""),
          h("td", { class: "hide-narrow" }, `${m.ModificationDate || ""}${reps.length ? "" : " (no replica)"}`)));
      }
      if (!rows.length || rows.length === (path === "/" ? 0 : 1)) {
        rows.push(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "This directory is empty.")));
      }
      listing.replaceChildren(h("div", { class: "tablewrap" }, h("table", { id: "catalog-table" },
        h("thead", {}, h("tr", {}, ["Name", "Size", "Owner", "Group", "Mode", "Modified"].map(
          (x, i) => h("th", { scope: "col", class: i > 2 ? "hide-narrow" : (i === 1 ? "num" : null) }, x)))),
        h("tbody", {}, rows))));
      renderDatasets(entry.Datasets || {});
      dirSize();
      dirMeta();
      root.dataset.loaded = "true";
    } catch (exc) {
      showError(exc);
    } finally { listing.setAttribute("aria-busy", "false"); }
  }

  async function dirMeta() {
    try {
      const meta = await rpc(CATALOG, "getDirectoryUserMetadata", path);
      const keys = Object.keys(meta).sort();
      dirMetaEl.replaceChildren(...(keys.length ? [h("span", { class: "muted" }, "Metadata: "),
        ...keys.flatMap((k, i) => [i ? ", " : "", h("b", {}, k), `=${meta[k]}`])] : []));
    } catch { dirMetaEl.replaceChildren(); }
  }

  async function dirSize() {
    try {
      const reply = await rpc(CATALOG, "getDirectorySize", [path], true);
      const info = reply.Successful[path];
      if (!info) { dirInfo.textContent = "\u00a0"; return; }
      const perSE = Object.entries(info.PhysicalSize || {}).filter(([k]) => k !== "TotalSize"
        && k !== "TotalFiles").map(([se, v]) => `${se}: ${fmtBytes(v.Size)} in ${v.Files} file(s)`);
      dirInfo.textContent = `${info.LogicalFiles} file(s), ${fmtBytes(info.LogicalSize)}` +
        `${perSE.length ? ` \u2014 ${perSE.join("; ")}` : ""}`;
    } catch { dirInfo.textContent = "\u00a0"; }
  }

  async function showFile(lfn) {
    details.hidden = false;
    details.replaceChildren(h("p", { class: "loading" }, "Loading\u2026"));
    try {
      const [meta, user, reps] = await Promise.all([
        rpc(CATALOG, "getFileMetadata", [lfn]), rpc(CATALOG, "getFileUserMetadata", lfn),
        rpc(CATALOG, "getReplicas", [lfn], true)]);
      const m = meta.Successful[lfn] || {};
      const replicas = reps.Successful[lfn] || {};
      const local = new Set(ses);
      details.replaceChildren(
        h("h2", { id: "file-title" }, lfn),
        h("dl", { class: "attrs", id: "file-metadata" }, Object.entries(m).map(([k, v]) =>
          [h("dt", {}, k), h("dd", {}, k === "Mode" ? Number(v).toString(8) : String(v))])),
        h("h2", {}, "Metadata"),
        Object.keys(user).length ? h("dl", { class: "attrs", id: "file-user-metadata" },
          Object.entries(user).map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]))
          : h("p", { class: "muted" }, "No metadata."),
        h("h2", {}, "Replicas"),
        h("ul", { id: "file-replicas" }, Object.entries(replicas).map(([se, pfn]) => h("li", {},
          h("b", {}, se), " ", h("span", { class: "muted" }, pfn || ""), " ",
          local.has(se) ? h("a", { class: "button download", href: seURL(se, lfn), download: base(lfn) },
                            "Download") : h("span", { class: "muted" }, "(not served here)")))));
    } catch (exc) { details.replaceChildren(h("p", { class: "error" }, exc.message)); }
  }

  async function showDataset(name) {
    datasetFiles.replaceChildren(h("p", { class: "loading" }, "Loading\u2026"));
    try {
      const reply = await rpc(CATALOG, "getDatasetFiles", [name]);
      if (name in reply.Failed) throw new Error(`${name}: ${reply.Failed[name]}`);
      const lfns = reply.Successful[name] || [];
      datasetFiles.replaceChildren(h("h3", {}, `${base(name)}: ${lfns.length} file(s)`),
        h("ul", { id: "dataset-file-list" }, lfns.slice(0, 1000).map((lfn) => h("li", {},
          h("button", { type: "button", class: "linklike", onclick: () => {
            document.getElementById("tab-browse").click(); open(parent(lfn)).then(() => showFile(lfn));
          } }, lfn)))));
    } catch (exc) { datasetFiles.replaceChildren(h("p", { class: "error" }, exc.message)); }
  }

  function renderDatasets(found) {
    clear(datasets);
    clear(datasetFiles);
    const names = Object.keys(found);
    if (!names.length) {
      datasets.append(h("p", { class: "muted" }, `No dataset in ${path}.`));
      return;
    }
    datasets.append(h("div", { class: "tablewrap" }, h("table", { id: "dataset-table" },
      h("thead", {}, h("tr", {}, ["Dataset", "Status", "Files", "Size", "Query"].map(
        (x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, names.sort().map((name) => {
        const d = found[name] === true ? {} : found[name];
        const show = h("button", { type: "button", class: "linklike" }, base(name));
        show.addEventListener("click", () => showDataset(name));
        return h("tr", {}, h("td", {}, show), h("td", {}, d.Status || ""),
                 h("td", { class: "num" }, d.NumberOfFiles ?? ""),
                 h("td", { class: "num" }, fmtBytes(d.TotalSize)),
                 h("td", {}, d.MetaQuery ? JSON.stringify(d.MetaQuery) : ""));
      })))));
  }

  try {
    const [f, conf] = await Promise.all([rpc(CATALOG, "getMetadataFields"),
                                         rpc(SE_SERVICE, "getStorageElements").catch(() => null)]);
    fields = f.FileMetaFields || {};
    fieldsInfo.textContent = Object.keys(fields).length
      ? `Fields: ${Object.entries(fields).map(([k, v]) => `${k} (${v})`).join(", ")}; also Size, SE, User, Group.`
      : "No metadata field is declared (administrators declare them).";
    if (conf) {
      ses = Object.entries(conf.StorageElements).filter(([, se]) => (se.Protocols || [])
        .some((p) => p.Plugin === "HTTPS")).map(([name]) => name).sort();
    }
    for (const se of ses) seSel.append(h("option", { value: se }, se));
    if (!ses.length) { upBtn.disabled = true; upInfo.textContent = "This server has no disk SE to upload to."; }
  } catch (exc) { showError(exc); }
  await open(path);
  return null;
}
