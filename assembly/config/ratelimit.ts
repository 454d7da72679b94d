// SPDX-License-Identifier: Apache-2.0
// The `rate_limit` option: the token rate-limit service to check LLM calls with (ASM's contract),
// validated into llm/budget.ts's BudgetConfig. Every problem is one message naming the field; a
// bad optional field keeps its default, a bad `cluster` or no valid key turns budgets off. Pure:
// no host imports.

import { JSON } from "assemblyscript-json/assembly";
import { BudgetConfig, KeyTemplate } from "../llm/budget";
import { serviceFromCluster } from "../llm/hosts";

const FIELDS: string[] = ["cluster", "authority", "keys", "timeout_ms", "fail_open", "rejected_code"];

/** An integer field within bounds, else `fallback` (after a message when it is present). */
function integer(obj: JSON.Obj, key: string, min: i64, max: i64, fallback: i64, errors: string[]): i64 {
  const v = obj.get(key);
  if (v === null) return fallback;
  if (v.isInteger) {
    const n = (v as JSON.Integer).valueOf();
    if (n >= min && n <= max) return n;
  }
  errors.push(
    "'rate_limit." +
      key +
      "' must be an integer from " +
      min.toString() +
      " to " +
      max.toString() +
      "; using " +
      fallback.toString(),
  );
  return fallback;
}

/** The budget configuration, or null (after messages) when budgets stay off. */
export function readBudget(value: JSON.Value, errors: string[]): BudgetConfig | null {
  const obj = value as JSON.Obj;
  const names = obj.keys;
  for (let i = 0; i < names.length; i++) {
    if (!FIELDS.includes(names[i]))
      errors.push("'rate_limit." + names[i] + "' is not a known field; ignored");
  }
  const b = new BudgetConfig();
  const cluster = obj.get("cluster");
  if (cluster === null || !cluster.isString || (cluster as JSON.Str).valueOf().length == 0) {
    errors.push("'rate_limit.cluster' must be the service's Envoy cluster; token budgets are off");
    return null;
  }
  b.cluster = (cluster as JSON.Str).valueOf();
  b.clusterBytes = String.UTF8.encode(b.cluster);
  const host = serviceFromCluster(b.cluster);
  b.authority = host !== null ? host : b.cluster;
  const authority = obj.get("authority");
  if (authority !== null) {
    if (authority.isString && (authority as JSON.Str).valueOf().length > 0)
      b.authority = (authority as JSON.Str).valueOf();
    else errors.push("'rate_limit.authority' must be a non-empty string; using " + b.authority);
  }
  const keys = obj.get("keys");
  if (keys !== null && keys.isArr) {
    const items = (keys as JSON.Arr).valueOf();
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      const where = "'rate_limit.keys[" + i.toString() + "]'";
      if (!item.isString) {
        errors.push(where + " must be a string; ignored");
        continue;
      }
      const t = KeyTemplate.parse((item as JSON.Str).valueOf());
      if (t.error !== null) errors.push(where + " " + t.error! + "; ignored");
      else b.templates.push(t);
    }
  } else if (keys !== null) errors.push("'rate_limit.keys' must be an array of key templates");
  if (b.templates.length == 0) {
    errors.push("'rate_limit.keys' has no valid key template; token budgets are off");
    return null;
  }
  b.timeoutMs = <u32>integer(obj, "timeout_ms", 1, 60000, 200, errors);
  b.rejectedCode = <u32>integer(obj, "rejected_code", 400, 599, 429, errors);
  const failOpen = obj.get("fail_open");
  if (failOpen !== null) {
    if (failOpen.isBool) b.failOpen = (failOpen as JSON.Bool).valueOf();
    else errors.push("'rate_limit.fail_open' must be true or false; using true");
  }
  return b;
}
