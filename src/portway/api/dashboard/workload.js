// One workload: its replicas grouped by region and target, its events, the
// drift matrix (field x target verdicts) and a live tail of its logs.

import { getJson, isAbort, streamNdjson } from "./api.js";
import {
  age, badge, clock, fill, h, healthBadge, phaseBadge, stateBadge, table,
} from "./dom.js";
import { statusLine, targetInfo } from "./common.js";

const LOG_LINES_KEPT = 500;

export function renderWorkload(view, life, namespace, name) {
  const base = `/v1/namespaces/${encodeURIComponent(namespace)}/workloads/${encodeURIComponent(name)}`;
  const status = statusLine();
  const summary = h("div", { id: "summary" });
  const replicas = h("div", { id: "replica-groups" });
  const events = h("div", { id: "event-list" });
  const drift = h("div", { id: "drift-matrix" }, h("p", { class: "empty" }, "Planning on every target…"));
  const logs = logPanel();
  view.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/workloads" }, "Workloads"), " › ",
      h("a", { href: `#/workloads?namespace=${encodeURIComponent(namespace)}` }, namespace)),
    h("div", { class: "heading" }, h("h1", null, name), status.el),
    summary,
    h("section", { id: "replicas" }, h("h2", null, "Replicas"), replicas),
    h("section", { id: "drift" }, h("h2", null, "Drift"),
      h("p", { class: "hint" }, "What each target does with each field of the spec: ",
        badge("honored", "ok"), " ", badge("emulated", "info"), " ", badge("dropped", "warn"),
        " ", badge("rejected", "bad"), "; ● marks the targets it runs on. Hover a cell for the reason."),
      drift),
    h("section", { id: "events" }, h("h2", null, "Events"), events),
    h("section", { id: "logs" }, h("h2", null, "Live logs"), logs.el),
  );

  let plannedGeneration = null;
  life.every(2000, async () => {
    try {
      const [workload, replicaList, eventList, targets] = await Promise.all([
        getJson(base, null, life.signal),
        getJson(`${base}/replicas`, null, life.signal),
        getJson(`/v1/namespaces/${encodeURIComponent(namespace)}/events`,
          { workload: name, limit: 30 }, life.signal),
        targetInfo(life.signal),
      ]);
      summary.replaceChildren(summaryList(workload));
      fill(replicas, replicaGroups(replicaList.items, targets));
      events.replaceChildren(eventTable(eventList.items));
      status.fresh();
      if (workload.generation !== plannedGeneration) {
        // the verdicts change only with the spec (or the kept conformance run)
        plannedGeneration = workload.generation;
        const placed = new Set(Object.values(workload.status.placements ?? {}).map((p) => p.target));
        refreshDrift(drift, base, life, placed);
      }
    } catch (error) {
      status.failed(error);
    }
  });
  logs.follow(`${base}/logs`, life);
}

function summaryList(w) {
  const counts = w.status.replicas ?? {};
  const pairs = [
    ["Namespace", w.namespace],
    ["Phase", phaseBadge(w.deleting ? "Deleting" : w.status.phase)],
    ["Ready", `${counts.ready ?? 0} of ${counts.desired ?? w.spec.replicas ?? 0}`
      + ` (${counts.running ?? 0} running, ${counts.updated ?? 0} updated)`],
    ["Image", h("code", null, w.spec.image ?? "")],
    ["Generation", `${w.generation} (template ${w.templateGeneration})`],
    ["Isolation", w.spec.isolation ?? "standard"],
    ["Portability", w.spec.portability ?? "strict"],
  ];
  if (w.status.message) pairs.push(["Message", w.status.message]);
  if (w.status.schedulingMessage) pairs.push(["Scheduling", w.status.schedulingMessage]);
  if (w.degradations?.length) {
    pairs.push(["Degraded fields", w.degradations.map((d) => `${d.path} on ${d.target}: ${d.verdict}`).join("; ")]);
  }
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

function replicaGroups(items, targets) {
  if (!items.length) return h("p", { class: "empty" }, "No replicas yet.");
  // region -> target -> replicas; unlabelled targets go last, under "no region"
  const regions = new Map();
  for (const replica of items) {
    const region = targets.get(replica.target)?.region ?? "";
    if (!regions.has(region)) regions.set(region, new Map());
    const byTarget = regions.get(region);
    if (!byTarget.has(replica.target)) byTarget.set(replica.target, []);
    byTarget.get(replica.target).push(replica);
  }
  const order = [...regions.keys()].sort((a, b) => (a === "") - (b === "") || a.localeCompare(b));
  return order.map((region) => h("div", { class: "region", dataset: { region } },
    h("h3", null, region ? `Region ${region}` : "No region label"),
    [...regions.get(region).entries()].sort(([a], [b]) => a.localeCompare(b))
      .map(([target, replicas]) => targetBlock(target, replicas, targets.get(target)))));
}

function targetBlock(target, replicas, info) {
  const title = h("h4", null, target || "(not placed)");
  if (info) {
    title.append(" ", h("span", { class: "meta" }, info.driver, info.zone ? ` · zone ${info.zone}` : ""),
      " ", healthBadge(info.health));
    if (info.cordoned) title.append(" ", badge("cordoned", "warn"));
  }
  const rows = replicas.map((r) => ({
    props: { dataset: { replica: String(r.index) } },
    cells: [
      [String(r.index), { class: "num" }],
      stateBadge(r.state),
      r.ready ? badge("ready", "ok") : badge("not ready", "warn"),
      [String(r.restartCount), { class: "num" }],
      r.startedAt ? [age(r.startedAt), { title: `started ${r.startedAt}` }]
        : [age(r.createdAt), { title: r.createdAt ? `created ${r.createdAt}` : "not created yet" }],
      h("code", null, r.containerName || "—"),
      r.endpoints.join(", ") || "—",
      r.message || r.lastReason || "",
    ],
  }));
  return h("div", { class: "target", dataset: { target } }, title,
    table(["#", "State", "Ready", "Restarts", "Age", "Container", "Endpoints", "Message"], rows));
}

function eventTable(items) {
  if (!items.length) return h("p", { class: "empty" }, "No events.");
  const rows = [...items].reverse().map((e) => ({
    props: { class: e.type === "Warning" ? "warning" : null },
    cells: [clock(e.ts), e.type === "Warning" ? badge("Warning", "bad") : e.type, e.reason, e.message],
  }));
  return table(["Time", "Type", "Reason", "Message"], rows, { class: "events" });
}

const VERDICTS = { honored: "ok", emulated: "info", dropped: "warn", rejected: "bad" };

async function refreshDrift(into, base, life, placed) {
  try {
    const { items } = await getJson(`${base}/drift`, null, life.signal);
    fill(into, driftMatrix(items[0], placed));
  } catch (error) {
    if (!isAbort(error)) {
      into.replaceChildren(h("p", { class: "error" }, `${error.code ?? ""} ${error.message}`));
    }
  }
}

/** Fields x targets; the targets the workload runs on come first. */
function driftMatrix(plan, placed) {
  const targets = [...plan.targets].sort((a, b) =>
    placed.has(b.target) - placed.has(a.target) || a.target.localeCompare(b.target));
  if (!targets.length) return h("p", { class: "empty" }, "No targets to plan on.");
  const paths = [...new Set(targets.flatMap((t) => t.fields.map((f) => f.path)))];
  const verdictOf = new Map(targets.map((t) => [t.target, new Map(t.fields.map((f) => [f.path, f]))]));
  const rows = paths.map((path) => ({
    props: { dataset: { field: path } },
    cells: [h("code", null, path), ...targets.map((t) => {
      const field = verdictOf.get(t.target).get(path);
      if (!field) return ["—", { class: "cell" }];
      return [badge(field.verdict, VERDICTS[field.verdict] ?? "muted"),
        { class: "cell", title: `${field.feature}: ${field.reason}` }];
    })],
  }));
  for (const mode of ["strict", "lenient"]) {
    rows.push({
      props: { class: "total" },
      cells: [`deployable (${mode})`, ...targets.map((t) => [
        t.deployable[mode] ? badge("yes", "ok") : badge("no", "bad"), { class: "cell" }])],
    });
  }
  const headers = ["Field", ...targets.map((t) => h("span", { title: placed.has(t.target) ? "runs here" : "could run here" },
    `${t.target} (${t.driver}${t.tier !== "standard" ? `@${t.tier}` : ""})`,
    placed.has(t.target) ? " ●" : ""))];
  const notes = targets.flatMap((t) => t.notes.map((n) => `${t.target}: ${n}`));
  return [table(headers, rows, { class: "matrix" }),
    notes.length ? h("ul", { class: "notes" }, notes.map((n) => h("li", null, n))) : null];
}

function logPanel() {
  const state = h("p", { class: "status" }, "connecting…");
  const pre = h("pre", { id: "log", class: "log", tabindex: "0", "aria-live": "off" });
  const el = h("div", null, state, pre);

  function show(item) {
    const stuck = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const line = item.error
      ? h("span", { class: "stderr" }, `${item.target} #${item.replica} log stream failed: ${item.error}`)
      : h("span", { class: item.stream === "stderr" ? "stderr" : null },
        h("span", { class: "src" }, `${item.target} #${item.replica} `),
        item.ts ? h("span", { class: "ts" }, `${item.ts.slice(11, 19)} `) : null,
        item.line);
    pre.append(line, "\n");
    while (pre.childNodes.length > LOG_LINES_KEPT * 2) pre.firstChild.remove();
    if (stuck) pre.scrollTop = pre.scrollHeight; // follow unless the user scrolled up
  }

  return {
    el,
    /** Follow the logs; when the stream ends (replicas replaced, scaled or
     *  stopped) pick up again from the last line's time, skipping lines seen. */
    async follow(path, life) {
      let since = null;
      let seenAtSince = new Set();
      while (!life.ended) {
        try {
          state.textContent = "following";
          const params = since === null ? { follow: "true", tail: 100 } : { follow: "true", since };
          await streamNdjson(path, params, life.signal, (item) => {
            const key = `${item.replica} ${item.ts} ${item.line}`;
            if (item.ts) {
              const at = Date.parse(item.ts) / 1000;
              if (seenAtSince.has(key)) return;
              if (since === null || at > since) {
                since = at;
                seenAtSince = new Set();
              }
              seenAtSince.add(key);
            }
            show(item);
          });
          state.textContent = "the stream ended (replicas stopped or replaced); reconnecting…";
        } catch (error) {
          if (isAbort(error)) return;
          state.textContent = `log stream failed (${error.message}); retrying…`;
        }
        await new Promise((resolve) => setTimeout(resolve, 3000));
      }
    },
  };
}
