// The conformance matrix the planner trusts: feature x backend (driver and
// isolation tier), each cell the kept run's verdict.

import { getJson } from "./api.js";
import { badge, h, table } from "./dom.js";
import { statusLine } from "./common.js";

const RESULTS = { pass: "ok", fail: "bad", untested: "warn", unsupported: "muted" };

export function renderConformance(view, life) {
  const status = statusLine();
  const body = h("div", { id: "conformance" });
  view.append(
    h("div", { class: "heading" }, h("h1", null, "Conformance"), status.el),
    h("p", { class: "hint" }, "Each backend's claims tested against the real engine (",
      badge("pass", "ok"), " ", badge("fail", "bad"), " ", badge("untested", "warn"), " ",
      badge("unsupported", "muted"), "). Hover a cell for its cases."),
    body,
  );
  getJson("/v1/conformance", null, life.signal).then(({ drivers }) => {
    body.replaceChildren(matrix(drivers));
    status.fresh();
  }, (error) => status.failed(error));
}

function matrix(drivers) {
  const backends = Object.keys(drivers).sort();
  if (!backends.length) return h("p", { class: "empty" }, "No conformance run is kept.");
  const features = [...new Set(backends.flatMap((b) => Object.keys(drivers[b].features)))].sort();
  const rows = [
    {
      props: { class: "total" },
      cells: ["cases passed / failed", ...backends.map((b) => [
        `${drivers[b].casesPassed} / ${drivers[b].casesFailed}`,
        { class: "cell", title: `${drivers[b].engine}, run ${drivers[b].generatedAt}` }])],
    },
    ...features.map((feature) => ({
      props: { dataset: { feature } },
      cells: [h("code", null, feature), ...backends.map((b) => {
        const result = drivers[b].features[feature];
        if (!result) return ["—", { class: "cell" }];
        const why = [result.cases.join(", "), ...result.failures].filter(Boolean).join("\n");
        return [badge(result.status, RESULTS[result.status] ?? "muted"),
          { class: "cell", title: why || result.status }];
      })],
    })),
  ];
  return table(["Feature", ...backends], rows, { class: "matrix" });
}
