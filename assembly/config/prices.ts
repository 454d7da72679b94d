// SPDX-License-Identifier: Apache-2.0
// The `prices` option: a price list per model glob, validated into telemetry/cost.ts's table.
// Every problem is one message naming the field; a broken entry is skipped, the rest is kept.
// Pure: no host imports.

import { JSON } from "assemblyscript-json/assembly";
import { Price, PriceTable, priceOfNumber, NO_PRICE } from "../telemetry/cost";

const PRICE_KEYS: string[] = ["model", "input", "output", "cached_input", "cache_write", "reasoning"];
const SKIPPED = "; price skipped";

/** One message: the field (`where`, and `key` when not empty) and what is wrong with it. */
function problem(errors: string[], where: string, key: string, text: string): void {
  errors.push("'" + where + (key.length > 0 ? "." + key : "") + "' " + text);
}

/**
 * A price field as millionths per million tokens: NO_PRICE when absent, -2 (after a message)
 * when it is not a number of at most 6 decimal places from 0 to 1000000.
 */
function priceField(obj: JSON.Obj, key: string, where: string, errors: string[]): i64 {
  const v = obj.get(key);
  if (v === null) return NO_PRICE;
  let parsed: i64 = -1;
  if (v.isInteger) parsed = priceOfNumber(<f64>(v as JSON.Integer).valueOf());
  else if (v.isFloat) parsed = priceOfNumber((v as JSON.Float).valueOf());
  if (parsed < 0) {
    problem(errors, where, key, "must be a number from 0 to 1000000 with at most 6 decimal places" + SKIPPED);
    return -2;
  }
  return parsed;
}

/** Reads the `prices` array (already known to be an array) into `table`. */
export function readPrices(value: JSON.Value, table: PriceTable, errors: string[]): void {
  const items = (value as JSON.Arr).valueOf();
  for (let i = 0; i < items.length; i++) {
    const where = "prices[" + i.toString() + "]";
    const item = items[i];
    if (!item.isObj) {
      problem(errors, where, "", "must be an object" + SKIPPED);
      continue;
    }
    const p = readPrice(item as JSON.Obj, where, errors);
    if (p !== null) table.prices.push(p);
  }
}

function readPrice(obj: JSON.Obj, where: string, errors: string[]): Price | null {
  const names = obj.keys;
  for (let i = 0; i < names.length; i++) {
    if (!PRICE_KEYS.includes(names[i])) problem(errors, where, names[i], "is not a known field; ignored");
  }
  const model = obj.get("model");
  if (model === null || !model.isString || (model as JSON.Str).valueOf().length == 0) {
    problem(errors, where, "model", "is required: a model name or glob such as qwen-turbo*" + SKIPPED);
    return null;
  }
  const p = new Price();
  p.model = (model as JSON.Str).valueOf();
  let ok = true;
  for (let k = 1; k < PRICE_KEYS.length; k++) {
    const key = PRICE_KEYS[k];
    const v = priceField(obj, key, where, errors);
    if (v == -2) {
      ok = false;
      continue;
    }
    if (v == NO_PRICE && k <= 2) {
      problem(errors, where, key, "is required: the price per million tokens" + SKIPPED);
      ok = false;
      continue;
    }
    if (k == 1) p.input = v;
    else if (k == 2) p.output = v;
    else if (k == 3) p.cachedInput = v;
    else if (k == 4) p.cacheWrite = v;
    else p.reasoning = v;
  }
  return ok ? p : null;
}

/** Whether a currency is an ISO 4217 code: three capital ASCII letters. */
export function isCurrencyCode(code: string): bool {
  if (code.length != 3) return false;
  for (let i = 0; i < 3; i++) {
    const c = code.charCodeAt(i);
    if (c < 0x41 || c > 0x5a) return false;
  }
  return true;
}
