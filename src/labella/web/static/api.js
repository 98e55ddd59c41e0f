// The JSON API, as the pages use it: every error becomes an ApiError whose message is the
// server's own "detail" (the 4xx messages name the problem), or says that the server is out of
// reach.

export class ApiError extends Error {
  constructor(message, { status = 0, code = "", body = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0: no answer (offline, server down)
    this.code = code;
    this.body = body;
  }

  get offline() {
    return this.status === 0;
  }

  /** Worth retrying later: no answer, a timeout, too many requests or a server error. */
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

// The session's CSRF token, rendered into the page by the server: every state-changing request
// signed in by the session cookie must echo it in this header, or the server refuses it (403).
export const CSRF_HEADER = "X-CSRF-Token";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") || "" : "";
}

/** A signed-out page (expired or revoked session) goes to the sign-in page, then comes back. */
export function toLogin() {
  const next = window.location.pathname + window.location.search;
  window.location.assign(`/login?next=${encodeURIComponent(next)}`);
}

export async function api(path, { method = "GET", body, signal, query } = {}) {
  const url = query ? `${path}?${new URLSearchParams(dropEmpty(query))}` : path;
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (!SAFE_METHODS.has(method.toUpperCase())) init.headers[CSRF_HEADER] = csrfToken();
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("The server cannot be reached; check the connection.", { status: 0 });
  }
  return readResponse(response);
}

export async function readResponse(response) {
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (response.status === 401 && document.body.dataset.page !== "login") toLogin();
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : null;
    throw new ApiError(detail || `The server answered ${response.status} ${response.statusText}`, {
      status: response.status,
      code: (data && data.code) || "",
      body: data,
    });
  }
  return data;
}

export function dropEmpty(query) {
  const out = {};
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") out[key] = String(value);
  }
  return out;
}

/**
 * Upload a file with progress (fetch has no upload progress; XMLHttpRequest does).
 * onProgress(loaded, total) is called while the bytes go out.
 */
export function upload(path, formData, { onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader(CSRF_HEADER, csrfToken());
    xhr.upload.addEventListener("progress", (event) => {
      if (onProgress && event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      const response = new Response(xhr.responseText, {
        status: xhr.status,
        statusText: xhr.statusText,
      });
      readResponse(response).then(resolve, reject);
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError("The upload failed: the server cannot be reached.", { status: 0 })),
    );
    xhr.addEventListener("abort", () => reject(new ApiError("The upload was cancelled.")));
    xhr.send(formData);
  });
}
