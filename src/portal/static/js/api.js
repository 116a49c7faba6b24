// The portal's only way to the server: same-origin requests carrying the session's CSRF
// token. Replies are DIRAC envelopes ({OK, Value} or {OK: false, Message}); failures become
// ApiError with the server's message (never a stack trace).

let csrf = "";
export function setCsrf(token) { csrf = token || ""; }

export class ApiError extends Error {
  constructor(message, { status = 0, cls = "", extra = {} } = {}) {
    super(message);
    this.status = status;
    this.cls = cls;
    this.extra = extra;
  }
  get needsLogin() { return this.cls === "NotAuthenticatedError"; }
}

// JEncode markers: datetimes stay DIRAC's "YYYY-mm-dd HH:MM:SS" (UTC) text
function revive(_key, value) {
  if (value && typeof value === "object" && "__dCls" in value) {
    return value.obj;
  }
  return value;
}

async function envelope(response) {
  let body = null;
  const text = await response.text();
  try { body = JSON.parse(text, revive); } catch { body = null; }
  if (body && body.OK === true) return body.Value;
  const message = body && body.Message ? body.Message
    : `the server answered ${response.status} ${response.statusText}`;
  const extra = {};
  if (body) for (const [k, v] of Object.entries(body)) {
    if (!["OK", "Message", "Errno", "ExceptionClass"].includes(k)) extra[k] = v;
  }
  const error = new ApiError(message, { status: response.status, cls: body?.ExceptionClass || "",
                                        extra });
  if (error.needsLogin) window.dispatchEvent(new CustomEvent("portal:signed-out",
                                                             { detail: message }));
  throw error;
}

async function request(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", ...options });
  } catch (exc) {
    throw new ApiError(`the server cannot be reached (${exc.message})`);
  }
  return envelope(response);
}

export function getJSON(url) { return request(url); }

export function post(url, fields = {}) {
  return request(url, {
    method: "POST",
    headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields),
  });
}

/** Call ``method`` of ``service`` ("System/Service") with positional ``args`` as the user. */
export function rpc(service, method, ...args) {
  return post(`/portal/api/rpc/${service}`, { method, args: JSON.stringify(args) });
}

/** Like rpc, but a refused bulk action still returns its envelope's extra keys. */
export async function rpcAction(service, method, ...args) {
  try {
    return { ok: true, value: await rpc(service, method, ...args), extra: {} };
  } catch (exc) {
    if (exc instanceof ApiError && !exc.needsLogin && exc.status === 200) {
      return { ok: false, message: exc.message, extra: exc.extra };
    }
    throw exc;
  }
}

/** XHR upload (fetch has no upload progress): body is a File, Blob or FormData. */
export function upload(url, body, { method = "POST", headers = {}, onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    if (onProgress) xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.onerror = () => reject(new ApiError("the upload was interrupted"));
    xhr.onload = () => {
      const response = new Response(xhr.responseText, { status: xhr.status,
                                                        statusText: xhr.statusText });
      envelope(response).then(resolve, reject);
    };
    xhr.send(body);
  });
}

/** Fetch a download; errors come back as messages, the file is saved by the browser. */
export async function download(url, fallbackName) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin" });
  } catch (exc) {
    throw new ApiError(`the server cannot be reached (${exc.message})`);
  }
  if (!response.ok || (response.headers.get("Content-Type") || "").startsWith("application/json")) {
    await envelope(response);  // throws the server's message
  }
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = match ? match[1] : fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  return blob.size;
}
