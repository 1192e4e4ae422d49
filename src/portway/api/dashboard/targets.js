// Targets: region and zone, health, scheduling status (cordon, drain), and
// how many replicas each one runs.

import { getJson, isAbort } from "./api.js";
import { age, badge, h, healthBadge, table } from "./dom.js";
import { statusLine, targetInfo } from "./common.js";

const SCHEDULING = { Ready: "ok", SchedulingDisabled: "warn", Draining: "warn" };

export function renderTargets(view, life) {
  const status = statusLine();
  const body = h("div", { id: "targets" });
  view.append(h("div", { class: "heading" }, h("h1", null, "Targets"), status.el), body);
  life.every(3000, async () => {
    try {
      const [targets, counts] = await Promise.all([targetInfo(life.signal), replicaCounts(life.signal)]);
      body.replaceChildren(targets.size ? targetTable([...targets.values()], counts)
        : h("p", { class: "empty" }, "No targets (or this token may not list them)."));
      status.fresh();
    } catch (error) {
      status.failed(error);
    }
  });
}

/** target -> replicas in the namespaces this token may read (null: not allowed). */
async function replicaCounts(signal) {
  try {
    const { items } = await getJson("/v1/replicas", null, signal);
    const counts = new Map();
    for (const r of items) counts.set(r.target, (counts.get(r.target) ?? 0) + 1);
    return counts;
  } catch (error) {
    if (isAbort(error)) throw error;
    return null;
  }
}

function targetTable(targets, counts) {
  const rows = targets.map((t) => ({
    props: { dataset: { target: t.name } },
    cells: [
      h("strong", null, t.name),
      t.driver,
      t.region || "—",
      t.zone || "—",
      healthBadge(t.health),
      badge(t.status, SCHEDULING[t.status] ?? "muted"),
      t.cordoned ? badge("cordoned", "warn") : "no",
      [counts ? String(counts.get(t.name) ?? 0) : "—", { class: "num" }],
      Object.keys(t.tiers ?? {}).sort().join(", ") || "standard",
      t.detail,
      age(t.checkedAt),
    ],
  }));
  return table(
    ["Name", "Driver", "Region", "Zone", "Health", "Scheduling", "Cordoned", "Replicas", "Tiers",
      "Detail", "Checked"],
    rows, { class: "list" },
  );
}
