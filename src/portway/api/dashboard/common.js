// Pieces the views share: a status line and the targets' topology.

import { getJson, isAbort } from "./api.js";
import { h, topology } from "./dom.js";

/** A line saying when the data was last read, or what went wrong. */
export function statusLine() {
  const el = h("p", { class: "status", role: "status" });
  return {
    el,
    fresh() {
      el.classList.remove("error");
      el.textContent = `updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
    },
    failed(error) {
      if (isAbort(error)) return;
      el.classList.add("error");
      el.textContent = error.code ? `${error.code}: ${error.message}` : String(error.message);
    },
  };
}

/**
 * target name -> {driver, health, region, zone, cordoned}; empty when the
 * token may not list targets (the views then show names only).
 */
export async function targetInfo(signal) {
  try {
    const { items } = await getJson("/v1/targets", null, signal);
    return new Map(items.map((t) => [t.name, { ...t, ...topology(t.labels) }]));
  } catch (error) {
    if (isAbort(error) || error.status !== 403) throw error;
    return new Map();
  }
}

/** "pod-eu (eu)" for a target name, with its region when it has one. */
export function targetLabel(name, targets) {
  const region = targets.get(name)?.region;
  return region ? `${name} (${region})` : name;
}
