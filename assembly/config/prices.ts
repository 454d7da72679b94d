// SPDX-License-Identifier: Apache-2.0
// The `prices` option: a price list per model glob, validated into telemetry/cost.ts's table.
// Every problem is one message naming the field; a broken entry is skipped, the rest is kept.
// Pure: no host imports.

import { JSON } from "assemblyscript-json/assembly";
import { Price, PriceTable, parsePrice, NO_PRICE } from "../telemetry/cost";

const PRICE_KEYS: string[] = ["model", "input", "output", "cached_input", "cache_write", "reasoning"];
const SKIPPED = "; price skipped";

/**
 * A price field as millionths per million tokens: NO_PRICE when absent, -2 (after a message)
 * when it is not a decimal of at most 6 places from 0 to 1000000.
 */
function priceField(obj: JSON.Obj, key: string, where: string, errors: string[]): i64 {
  const v = obj.get(key);
  if (v === null) return NO_PRICE;
  let parsed: i64 = -1;
  // A JSON number comes as a double; its shortest decimal text is what the configuration said.
  if (v.isInteger) parsed = parsePrice((v as JSON.Integer).valueOf().toString());
  else if (v.isFloat) parsed = parsePrice((v as JSON.Float).valueOf().toString());
  else if (v.isString) parsed = parsePrice((v as JSON.Str).valueOf());
  if (parsed < 0) {
    errors.push(
      "'" +
        where +
        "." +
        key +
        "' must be a price per million tokens: a number or decimal string from 0 to 1000000 with at most 6 decimal places" +
        SKIPPED,
    );
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
      errors.push("'" + where + "' must be an object" + SKIPPED);
      continue;
    }
    const p = readPrice(item as JSON.Obj, where, errors);
    if (p !== null) table.prices.push(p);
  }
}

function readPrice(obj: JSON.Obj, where: string, errors: string[]): Price | null {
  const names = obj.keys;
  for (let i = 0; i < names.length; i++) {
    if (!PRICE_KEYS.includes(names[i]))
      errors.push("'" + where + "." + names[i] + "' is not a known field; ignored");
  }
  const model = obj.get("model");
  if (model === null || !model.isString || (model as JSON.Str).valueOf().length == 0) {
    errors.push("'" + where + ".model' is required: a model name or glob such as qwen-turbo*" + SKIPPED);
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
      errors.push("'" + where + "." + key + "' is required: the price per million tokens" + SKIPPED);
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
