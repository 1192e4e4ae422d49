// The workload list: namespace selector, phase, ready/desired, targets.

import { getJson } from "./api.js";
import { age, fill, h, phaseBadge, table, workloadHref } from "./dom.js";
import { statusLine, targetInfo, targetLabel } from "./common.js";

export function renderWorkloads(view, life, query) {
  const chosen = query.get("namespace") ?? "";
  const select = h("select", { id: "namespace", "aria-label": "Namespace" });
  select.addEventListener("change", () => {
    location.hash = select.value
      ? `#/workloads?namespace=${encodeURIComponent(select.value)}` : "#/workloads";
  });
  const status = statusLine();
  const body = h("div", { id: "workloads" });
  view.append(
    h("div", { class: "heading" }, h("h1", null, "Workloads"),
      h("label", { class: "inline" }, "Namespace ", select), status.el),
    body,
  );
  let shownNamespaces = "";

  life.every(3000, async () => {
    try {
      const [{ items }, targets] = await Promise.all([
        getJson("/v1/workloads", null, life.signal),
        targetInfo(life.signal),
      ]);
      const namespaces = [...new Set(items.map((w) => w.namespace))].sort();
      if (chosen && !namespaces.includes(chosen)) namespaces.push(chosen);
      if (namespaces.join(",") !== shownNamespaces) {
        // rebuilt only when the set changes, so an open list is not closed under the user
        shownNamespaces = namespaces.join(",");
        fill(select, [h("option", { value: "" }, "all namespaces"),
          namespaces.map((ns) => h("option", { value: ns, selected: ns === chosen }, ns))]);
      }
      const shown = items.filter((w) => !chosen || w.namespace === chosen);
      body.replaceChildren(shown.length ? workloadTable(shown, targets)
        : h("p", { class: "empty" }, chosen ? `No workloads in ${chosen}.` : "No workloads yet."));
      status.fresh();
    } catch (error) {
      status.failed(error);
    }
  });
}

function workloadTable(items, targets) {
  const rows = items.map((w) => {
    const counts = w.status.replicas ?? {};
    const placed = [...new Set(Object.values(w.status.placements ?? {}).map((p) => p.target))]
      .filter(Boolean).sort();
    const phase = w.deleting ? "Deleting" : w.status.phase;
    return {
      props: { dataset: { workload: `${w.namespace}/${w.name}` } },
      cells: [
        w.namespace,
        h("a", { href: workloadHref(w.namespace, w.name) }, w.name),
        phaseBadge(phase),
        [`${counts.ready ?? 0}/${counts.desired ?? w.spec.replicas ?? 0}`, { class: "num" }],
        placed.map((t) => targetLabel(t, targets)).join(", ") || "—",
        h("code", null, w.spec.image ?? ""),
        [String(w.generation), { class: "num" }],
        age(w.updatedAt),
      ],
    };
  });
  return table(
    ["Namespace", "Name", "Phase", "Ready", "Targets (region)", "Image", "Gen", "Changed"],
    rows, { class: "list" },
  );
}
