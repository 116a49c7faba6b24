// Launchpad: write or load a JDL (checked by the server's JDL parser as you type, errors at
// line:column), or fill a form; input files become the input sandbox; parametric jobs; the
// new job IDs link to the monitor.
import { rpc, upload } from "/portal/static/js/api.js";
import { clear, debounce, h, notify, showError, tabs } from "/portal/static/js/dom.js";

const MANAGER = "WorkloadManagement/JobManager";
const PORTAL = "Web/Portal";
const EXAMPLE = `[
  JobName = "hello";
  Executable = "/bin/echo";
  Arguments = "hello from pilotwms";
  StdOutput = "std.out";
  StdError = "std.err";
  OutputSandbox = {"std.out", "std.err"};
  CPUTime = 600;
]`;

export function quote(text) {
  return `"${String(text).replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}
const list = (items) => `{${items.map(quote).join(", ")}}`;
const csv = (text) => String(text || "").split(",").map((s) => s.trim()).filter(Boolean);

/** The JDL of the form's fields. */
export function formJDL(f) {
  const lines = [];
  const add = (name, value) => lines.push(`  ${name} = ${value};`);
  if (f.name) add("JobName", quote(f.name));
  add("Executable", quote(f.executable));
  if (f.arguments) add("Arguments", quote(f.arguments));
  add("StdOutput", quote("std.out"));
  add("StdError", quote("std.err"));
  const outputs = [...new Set(["std.out", "std.err", ...csv(f.outputs)])];
  add("OutputSandbox", list(outputs));
  if (f.cpu) add("CPUTime", String(Number(f.cpu)));
  if (csv(f.tags).length) add("Tags", list(csv(f.tags)));
  if (csv(f.outputData).length) add("OutputData", list(csv(f.outputData)));
  if (csv(f.outputData).length && f.outputSE) add("OutputSE", quote(f.outputSE));
  if (f.site) add("Site", quote(f.site));
  if (f.jobGroup) add("JobGroup", quote(f.jobGroup));
  const param = String(f.parametric || "").trim();
  const range = /^(-?\d+)\s*:\s*(-?\d+)(?:\s*:\s*(-?\d+))?$/.exec(param);
  if (range) {
    const [start, stop, step] = [Number(range[1]), Number(range[2]), Number(range[3] || 1)];
    add("Parameters", String(Math.max(0, Math.floor((stop - start) / step) + 1)));
    add("ParameterStart", String(start));
    add("ParameterStep", String(step));
  } else if (param) {
    add("Parameters", list(csv(param)));
  }
  return `[\n${lines.join("\n")}\n]`;
}

/** Put the input sandbox reference into a JDL, dropping local names it replaces. */
export function withSandbox(jdl, ref, names) {
  const match = /InputSandbox\s*=\s*\{([^}]*)\}/i.exec(jdl);
  if (!match) {
    const end = jdl.lastIndexOf("]");
    const line = `  InputSandbox = {${quote(ref)}};\n`;
    return end >= 0 ? `${jdl.slice(0, end).replace(/\s*$/, "\n")}${line}]` : `${jdl}\nInputSandbox = {${quote(ref)}};`;
  }
  const kept = [...match[1].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1])
    .filter((item) => !names.includes(item.split("/").pop()));
  const items = [ref, ...kept].map((x) => `"${x}"`).join(", ");
  return jdl.slice(0, match.index) + `InputSandbox = {${items}}` + jdl.slice(match.index + match[0].length);
}

export async function render(root, { session }) {
  const jdlArea = h("textarea", { class: "jdl", id: "jdl-editor", spellcheck: "false",
                                  "aria-describedby": "jdl-errors", "aria-label": "JDL" });
  jdlArea.value = EXAMPLE;
  const errors = h("ul", { class: "errors", id: "jdl-errors", "aria-live": "polite" });
  const summary = h("p", { class: "muted", id: "jdl-summary" }, "\u00a0");
  const jdlFile = h("input", { type: "file", id: "jdl-file", accept: ".jdl,.txt,text/plain" });
  jdlFile.addEventListener("change", async () => {
    if (jdlFile.files[0]) {
      jdlArea.value = await jdlFile.files[0].text();
      numberLines();
      check();
    }
  });

  const input = (id, label, attrs = {}) => {
    const el = h("input", { id, ...attrs });
    return [el, h("label", {}, label, el)];
  };
  const [exe, exeL] = input("f-executable", "Executable (a command, or one of your input files)",
                            { value: "/bin/echo", required: true });
  const [args, argsL] = input("f-arguments", "Arguments (%s: the parameter)", { value: "hello" });
  const [name, nameL] = input("f-name", "Job name", { value: "" });
  const [outputs, outL] = input("f-outputs", "Output sandbox (besides std.out, std.err)",
                                { placeholder: "result.txt, plots/*.png" });
  const [cpu, cpuL] = input("f-cpu", "CPU time (s)", { type: "number", min: "100", value: "600" });
  const [tags, tagsL] = input("f-tags", "Tags", { placeholder: "GPU, 8Processors" });
  const [site, siteL] = input("f-site", "Site", { placeholder: "any" });
  const [group, groupL] = input("f-jobgroup", "Job group", {});
  const [outData, outDataL] = input("f-output-data", "Output data (registered in the catalog)",
                                    { placeholder: "result.root, *.h5" });
  const [outSE, outSEL] = input("f-output-se", "Output SE", { placeholder: "the site's" });
  const [param, paramL] = input("f-parametric", "Parametric: start:stop[:step] or a, b, c",
                                { placeholder: "e.g. 1:10" });
  const preview = h("pre", { id: "form-jdl" });
  const formFields = () => ({ executable: exe.value.trim(), arguments: args.value,
    name: name.value.trim(), outputs: outputs.value, cpu: cpu.value, tags: tags.value,
    site: site.value.trim(), jobGroup: group.value.trim(), parametric: param.value,
    outputData: outData.value, outputSE: outSE.value.trim() });
  const form = h("form", { class: "form", id: "launch-form", onsubmit: (e) => e.preventDefault() },
                 exeL, argsL, nameL, outL, outDataL, outSEL, cpuL, tagsL, siteL, groupL,
                 paramL);
  const asJdl = h("button", { type: "button", id: "form-to-jdl" }, "Edit as JDL");

  const files = h("input", { type: "file", id: "input-files", multiple: true });
  const filesInfo = h("p", { class: "muted", id: "input-files-info" },
                      "No input file: nothing is uploaded.");
  files.addEventListener("change", () => {
    const chosen = [...files.files];
    filesInfo.textContent = chosen.length
      ? `${chosen.length} file(s), ${chosen.reduce((n, f) => n + f.size, 0)} bytes: ${chosen.map((f) => f.name).join(", ")}`
      : "No input file: nothing is uploaded.";
    if (mode === "form") updatePreview();
  });
  const progress = h("progress", { id: "upload-progress", max: "1", value: "0", hidden: true });
  const submit = h("button", { type: "button", class: "primary", id: "submit-job" }, "Submit");
  const result = h("div", { id: "submit-result", "aria-live": "polite" });

  let mode = "jdl";
  // line numbers beside the editor; lines with an error are marked there
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  let badLines = new Set();
  const numberLines = () => {
    const count = jdlArea.value.split("\n").length;
    if (gutter.childElementCount !== count || gutter.dataset.bad !== [...badLines].join()) {
      gutter.replaceChildren(...Array.from({ length: count }, (_, i) =>
        h("div", { class: badLines.has(i + 1) ? "bad" : null }, String(i + 1))));
      gutter.dataset.bad = [...badLines].join();
    }
    gutter.scrollTop = jdlArea.scrollTop;
  };
  jdlArea.addEventListener("input", numberLines);
  jdlArea.addEventListener("scroll", () => { gutter.scrollTop = jdlArea.scrollTop; });
  const editorPanel = h("div", {}, h("div", { class: "editor" }, gutter, jdlArea), errors, summary,
                        h("label", {}, "Load a JDL file", jdlFile));
  const formPanel = h("div", { hidden: true }, form, h("h2", {}, "JDL"), preview, asJdl);
  const { bar } = tabs([["jdl", "JDL"], ["form", "Form"]], (key) => {
    mode = key;
    editorPanel.hidden = key !== "jdl";
    formPanel.hidden = key !== "form";
    if (key === "form") updatePreview(); else check();
  });
  asJdl.addEventListener("click", () => {
    jdlArea.value = formJDL(formFields());
    numberLines();
    document.getElementById("tab-jdl").click();
  });

  root.append(h("h1", {}, "Launchpad"),
    h("section", { class: "panel" }, bar, editorPanel, formPanel),
    h("section", { class: "panel" }, h("h2", {}, "Input files (input sandbox)"),
      h("label", {}, "Files to send with the job", files), filesInfo, progress),
    h("div", { class: "toolbar" }, submit, h("span", { class: "muted" },
      `Submitted as ${session.user} in group ${session.group}.`)),
    result);

  let checking = 0;
  async function validate(text) {
    const mine = ++checking;
    try {
      const reply = await rpc(PORTAL, "checkJDL", text);
      if (mine !== checking) return null;
      return reply;
    } catch (exc) { showError(exc); return null; }
  }

  function showErrors(target, reply) {
    clear(errors);
    jdlArea.setAttribute("aria-invalid", reply.Errors.length ? "true" : "false");
    badLines = new Set(reply.Errors.filter((e) => e.line).map((e) => e.line));
    numberLines();
    for (const e of reply.Errors) {
      const where = e.line ? `line ${e.line}, column ${e.column}: ` : "";
      const item = h("li", {}, e.line ? h("button", { type: "button" }, `${where}${e.message}`)
                                  : `${where}${e.message}`);
      if (e.line) item.querySelector("button").addEventListener("click", () => jump(e));
      errors.append(item);
    }
    target.textContent = reply.Errors.length ? "This JDL cannot be submitted yet."
      : `Valid: ${reply.Jobs} job${reply.Jobs === 1 ? "" : "s"} would be submitted.`;
  }

  function jump({ line, column }) {
    const lines = jdlArea.value.split("\n");
    const offset = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0) + column - 1;
    jdlArea.focus();
    jdlArea.setSelectionRange(offset, Math.min(offset + 1, jdlArea.value.length));
  }

  const check = debounce(async () => {
    const reply = await validate(jdlArea.value);
    if (reply) showErrors(summary, reply);
  }, 300);
  jdlArea.addEventListener("input", check);

  const updatePreview = debounce(async () => {
    preview.textContent = formJDL(formFields());
  }, 150);
  form.addEventListener("input", updatePreview);

  submit.addEventListener("click", async () => {
    submit.disabled = true;
    clear(result);
    try {
      let jdl = mode === "form" ? formJDL(formFields()) : jdlArea.value;
      const checked = await rpc(PORTAL, "checkJDL", jdl);
      if (checked.Errors.length) {
        if (mode === "jdl") showErrors(summary, checked);
        throw new Error(`the JDL is not valid: ${checked.Errors[0].message}`);
      }
      const chosen = [...files.files];
      if (chosen.length) {
        const data = new FormData();
        for (const f of chosen) data.append("file", f, f.name);
        progress.hidden = false;
        const ref = await upload("/portal/api/sandbox", data, {
          onProgress: (done, total) => { progress.max = total; progress.value = done; } });
        jdl = withSandbox(jdl, ref, chosen.map((f) => f.name));
      }
      let ids = await rpc(MANAGER, "submitJob", jdl);
      if (Array.isArray(ids)) {
        await rpc(MANAGER, "confirmBulkSubmission", ids);
      } else {
        ids = [ids];
      }
      notify(`Submitted ${ids.length} job(s)`);
      const shown = ids.slice(0, 50);
      result.append(h("section", { class: "panel" }, h("h2", {}, "Submitted"),
        h("p", { id: "new-jobs" }, shown.flatMap((id, i) => [i ? ", " : "",
          h("a", { href: `#/job/${id}`, class: "new-job" }, `Job ${id}`)]),
          ids.length > shown.length ? ` and ${ids.length - shown.length} more` : ""),
        h("a", { href: "#/jobs" }, "See them in the job monitor")));
    } catch (exc) {
      showError(exc);
    } finally {
      submit.disabled = false;
      progress.hidden = true;
    }
  });
  numberLines();
  check();
  return null;
}
