// Building elements from data without ever parsing data as markup: every
// value becomes a text node or an attribute set with setAttribute.

/** h("td", {class: "x"}, "text", childNode, [more]) -> a new element. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A table: headers and rows of cells (strings or nodes, or [cell, props]). */
export function table(headers, rows, props) {
  return h(
    "table",
    props,
    h("thead", null, h("tr", null, headers.map((title) => h("th", { scope: "col" }, title)))),
    h("tbody", null, rows.map((row) => h("tr", row.props, row.cells.map(cell)))),
  );
}

function cell(value) {
  if (Array.isArray(value)) return h("td", value[1], value[0]);
  return h("td", null, value);
}

/** A coloured label: the class says which colour (see style.css). */
export function badge(text, kind) {
  return h("span", { class: `badge ${kind}` }, text);
}

const PHASES = { Ready: "ok", Completed: "ok", Progressing: "warn", Degraded: "bad", Deleting: "muted" };
export function phaseBadge(phase) {
  return badge(phase || "Unknown", PHASES[phase] ?? "muted");
}

const STATES = { running: "ok", created: "warn", pending: "warn", exited: "bad", unknown: "muted" };
export function stateBadge(state) {
  return badge(state || "unknown", STATES[state] ?? "muted");
}

const HEALTH = { healthy: "ok", unhealthy: "bad", undetected: "muted" };
export function healthBadge(health) {
  return badge(health || "unknown", HEALTH[health] ?? "muted");
}

/** "42s", "5m", "3h", "2d" for a number of seconds. */
export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

/** Age of an epoch-seconds number or an ISO time string ("—" when unknown). */
export function age(when) {
  if (when === null || when === undefined || when === "") return "—";
  const ms = typeof when === "number" ? when * 1000 : Date.parse(when);
  if (!Number.isFinite(ms)) return "—";
  return duration((Date.now() - ms) / 1000);
}

export function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

/** "#/workloads/ns/name" with both parts encoded. */
export function workloadHref(namespace, name) {
  return `#/workloads/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
}

/** A region and zone from a target's labels (the keys the CLI reads). */
export function topology(labels) {
  const first = (keys) => keys.map((k) => labels?.[k]).find((v) => v) ?? "";
  return {
    region: first(["region", "topology.kubernetes.io/region"]),
    zone: first(["zone", "topology.kubernetes.io/zone"]),
  };
}

/** Replace an element's children with `content` (a node, text, or a nested list of them). */
export function fill(el, content) {
  el.replaceChildren();
  return append(el, [content]);
}
