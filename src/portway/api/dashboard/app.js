// The dashboard's shell: the token form, the navigation and a hash router.
// Each view gets a Lifetime: its polling and streams stop when the user
// navigates away, so a left page costs the server nothing.

import { ApiError, getJson, isAbort, token } from "./api.js";
import { h } from "./dom.js";
import { renderConformance } from "./conformance.js";
import { renderTargets } from "./targets.js";
import { renderWorkload } from "./workload.js";
import { renderWorkloads } from "./workloads.js";

/** What a view owns: an abort signal and timers, all ended together. */
export class Lifetime {
  constructor() {
    this.controller = new AbortController();
    this.timers = new Set();
  }

  get signal() {
    return this.controller.signal;
  }

  get ended() {
    return this.controller.signal.aborted;
  }

  /** Run `task` now and then `ms` after each run ends (never overlapping). */
  every(ms, task) {
    const run = async () => {
      if (this.ended) return;
      try {
        await task();
      } catch (error) {
        if (!isAbort(error)) console.error(error);
      }
      if (this.ended) return;
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        run();
      }, ms);
      this.timers.add(timer);
    };
    run();
  }

  end() {
    this.controller.abort();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}

const ROUTES = [
  [/^#\/workloads\/([^/?]+)\/([^/?]+)$/, "workloads", (m, view, life) =>
    renderWorkload(view, life, decodeURIComponent(m[1]), decodeURIComponent(m[2]))],
  [/^#\/workloads(?:\?(.*))?$/, "workloads", (m, view, life) =>
    renderWorkloads(view, life, new URLSearchParams(m[1] ?? ""))],
  [/^#\/targets$/, "targets", (m, view, life) => renderTargets(view, life)],
  [/^#\/conformance$/, "conformance", (m, view, life) => renderConformance(view, life)],
];

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let current = null;

function leave() {
  current?.end();
  current = null;
}

function route() {
  leave();
  if (!token.get()) {
    showLogin();
    return;
  }
  const hash = location.hash || "#/workloads";
  for (const [pattern, section, render] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of nav.querySelectorAll("a")) {
      link.classList.toggle("active", link.dataset.section === section);
    }
    current = new Lifetime();
    view.replaceChildren();
    render(match, view, current);
    return;
  }
  view.replaceChildren(h("p", { class: "error" }, `No page at ${hash}. `,
    h("a", { href: "#/workloads" }, "Go to the workloads.")));
}

function showLogin(problem) {
  leave();
  nav.hidden = true;
  who.replaceChildren();
  const input = h("input", {
    id: "token", type: "password", name: "token", autocomplete: "off", required: true,
    placeholder: "pw_…", "aria-label": "API token",
  });
  const message = h("p", { class: "error", role: "alert" }, problem ?? "");
  const form = h("form", { id: "login", class: "login" },
    h("h1", null, "Sign in"),
    h("p", null, "Paste a portway API token (the first one is in $PORTWAY_HOME/admin.token on ",
      "the server's host; make others with ", h("code", null, "portway token create"), "). ",
      "It is kept in this tab only."),
    h("label", { for: "token" }, "Token"), input,
    h("button", { type: "submit" }, "Use token"),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    token.set(input.value.trim());
    try {
      await signedIn();
      route();
    } catch (error) {
      token.clear();
      message.textContent = error instanceof ApiError
        ? `${error.code}: ${error.message}` : `Cannot reach the server: ${error.message}`;
    }
  });
  view.replaceChildren(form);
  input.focus();
}

async function signedIn() {
  const me = await getJson("/v1/whoami");
  nav.hidden = false;
  const forget = h("button", { type: "button", class: "link", id: "forget" }, "forget token");
  forget.addEventListener("click", () => {
    token.clear();
    showLogin();
  });
  who.replaceChildren(`${me.user}${me.clusterAdmin ? " (cluster admin)" : ""} · `, forget);
}

window.addEventListener("hashchange", route);
window.addEventListener("portway:unauthenticated", () => {
  token.clear();
  showLogin("The server did not accept the token (unknown, expired or revoked).");
});

if (token.get()) {
  signedIn().then(route, (error) => {
    if (error instanceof ApiError && error.status === 401) return; // the event shows the form
    view.replaceChildren(h("p", { class: "error" }, `Cannot reach the server: ${error.message}`));
  });
} else {
  showLogin();
}
