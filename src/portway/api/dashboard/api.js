// The public JSON API, called with the token the user pasted. The token lives
// in sessionStorage: it survives a reload, not the closing of the tab.

const TOKEN_KEY = "portway.token";

// The API is the parent of /ui/ (relative, so a proxy's path prefix is kept).
const BASE = new URL("../", location.href.split("#")[0]);

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** A failed API call: HTTP status, the API's error code and its message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function url(path, params) {
  const target = new URL(path.replace(/^\//, ""), BASE);
  for (const [key, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, value);
  }
  return target;
}

async function call(path, params, signal) {
  const response = await fetch(url(path, params), {
    headers: { Authorization: `Bearer ${token.get() ?? ""}`, Accept: "application/json" },
    signal,
    cache: "no-store",
  });
  if (!response.ok) {
    let code = "HTTP" + response.status;
    let message = response.statusText;
    try {
      const body = await response.json();
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
    } catch {
      // not the API's error body (a proxy's page): keep the status line
    }
    if (response.status === 401) window.dispatchEvent(new CustomEvent("portway:unauthenticated"));
    throw new ApiError(response.status, code, message);
  }
  return response;
}

/** GET path (with query params) -> the parsed JSON body, or an ApiError. */
export async function getJson(path, params, signal) {
  return (await call(path, params, signal)).json();
}

/**
 * Read an ndjson stream, calling onItem with each parsed line, until the
 * server ends it or `signal` aborts (which also closes the connection).
 */
export async function streamNdjson(path, params, signal, onItem) {
  const response = await call(path, params, signal);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) if (line.trim()) onItem(JSON.parse(line));
    }
  } finally {
    reader.releaseLock();
  }
}

/** Whether an error is only the page having been left (not worth showing). */
export function isAbort(error) {
  return error?.name === "AbortError";
}
