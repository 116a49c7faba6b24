// Building the page safely: every text goes in as text (textContent), never as HTML.

/** h("a", {href: "#/x", class: "c", onclick: fn}, "text", child...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" && "value" in el) {
      el.value = value;
    } else if (key === "checked" || key === "selected" || key === "disabled" || key === "multiple") {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) { el.replaceChildren(); return el; }

export function statusBadge(status) {
  const text = String(status ?? "");
  return h("span", { class: `status ${text.replace(/[^A-Za-z]/g, "")}` }, text);
}

export function fmtBytes(n) {
  if (n === null || n === undefined || n === "") return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Number(n), i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

const messages = () => document.getElementById("messages");

/** A message in the corner: "error" ones stay until closed, others go after 6 s. */
export function notify(text, kind = "ok") {
  const close = h("button", { type: "button", "aria-label": "Close message" }, "\u00d7");
  const box = h("div", { class: `msg ${kind}`, role: kind === "error" ? "alert" : "status" },
                h("span", {}, text), close);
  close.addEventListener("click", () => box.remove());
  messages().append(box);
  if (kind !== "error") setTimeout(() => box.remove(), 6000);
  return box;
}

export function showError(exc) {
  if (exc && exc.needsLogin) return;  // the app shows the sign-in page
  notify(exc && exc.message ? exc.message : String(exc), "error");
}

/** A modal confirmation (a native <dialog>: focus trapped, Escape cancels). */
export function confirmDialog(title, text, confirmLabel = "Confirm", danger = true) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "button", class: danger ? "danger" : "primary" }, confirmLabel);
    const cancel = h("button", { type: "button" }, "Cancel");
    const dialog = h("dialog", { "aria-labelledby": "dlg-title" },
                     h("h2", { id: "dlg-title" }, title), h("p", {}, text),
                     h("div", { class: "buttons" }, cancel, ok));
    const done = (value) => { dialog.close(); dialog.remove(); resolve(value); };
    ok.addEventListener("click", () => done(true));
    cancel.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

export function tabs(items, onSelect) {
  const bar = h("div", { class: "tabs", role: "tablist" });
  const buttons = items.map(([key, label], index) => {
    const b = h("button", { type: "button", role: "tab", id: `tab-${key}`,
                            "aria-selected": index === 0 ? "true" : "false",
                            tabindex: index === 0 ? "0" : "-1" }, label);
    b.addEventListener("click", () => select(key));
    b.addEventListener("keydown", (e) => {
      const i = buttons.indexOf(b);
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        const next = buttons[(i + (e.key === "ArrowRight" ? 1 : buttons.length - 1)) % buttons.length];
        next.focus(); next.click();
      }
    });
    return b;
  });
  function select(key) {
    for (const b of buttons) {
      const on = b.id === `tab-${key}`;
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.tabIndex = on ? 0 : -1;
    }
    onSelect(key);
  }
  bar.append(...buttons);
  return { bar, select };
}

/** Parse "#/view/a/b?x=1" into {view, parts, params}. */
export function parseHash(hash) {
  const [path, query = ""] = (hash || "").replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { view: parts[0] || "jobs", parts: parts.slice(1),
           params: new URLSearchParams(query) };
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

/** A modal asking for one line of text (null when cancelled). */
export function promptDialog(title, label, confirmLabel = "OK") {
  return new Promise((resolve) => {
    const input = h("input", { type: "text", id: "dlg-input" });
    const ok = h("button", { type: "submit", class: "primary" }, confirmLabel);
    const cancel = h("button", { type: "button" }, "Cancel");
    const form = h("form", { method: "dialog" }, h("h2", { id: "dlg-title" }, title),
                   h("label", {}, label, input), h("div", { class: "buttons" }, cancel, ok));
    const dialog = h("dialog", { "aria-labelledby": "dlg-title" }, form);
    const done = (value) => { dialog.close(); dialog.remove(); resolve(value); };
    form.addEventListener("submit", (e) => { e.preventDefault(); done(input.value.trim()); });
    cancel.addEventListener("click", () => done(null));
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(null); });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}
