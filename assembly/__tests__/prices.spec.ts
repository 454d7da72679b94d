// SPDX-License-Identifier: Apache-2.0
// The `prices`, `currency` and `gen_ai_metrics` options: read, validated, each problem named.

import { parseConfig, ConfigResult } from "../config/config";
import { NO_PRICE } from "../telemetry/cost";

function parse(text: string): ConfigResult {
  return parseConfig(Uint8Array.wrap(String.UTF8.encode(text)));
}

describe("prices", () => {
  it("are off by default", () => {
    const r = parse("{}");
    expect(r.config.prices.active).toBe(false);
    expect(r.config.currency).toBe("USD");
    expect(r.config.genAiMetrics).toBe(false);
  });
  it("reads entries", () => {
    const r = parse(
      '{"prices":[{"model":"qwen-turbo*","input":0.05,"output":0.2,"cached_input":0.02},' +
        '{"model":"claude-*","input":3,"output":15,"cached_input":0.3,"cache_write":3.75,"reasoning":15}],' +
        '"currency":"CNY","gen_ai_metrics":true}',
    );
    expect(r.errors.length).toBe(0);
    expect(r.config.currency).toBe("CNY");
    expect(r.config.genAiMetrics).toBe(true);
    const t = r.config.prices.prices;
    expect(t.length).toBe(2);
    expect(t[0].model).toBe("qwen-turbo*");
    expect(t[0].input).toBe(50000);
    expect(t[0].output).toBe(200000);
    expect(t[0].cachedInput).toBe(20000);
    expect(t[0].cacheWrite).toBe(NO_PRICE);
    expect(t[0].reasoning).toBe(NO_PRICE);
    expect(t[1].cacheWrite).toBe(3750000);
    expect(t[1].cachedInput).toBe(300000);
    expect(r.config.prices.priceOf("qwen-turbo-latest", null)!.model).toBe("qwen-turbo*");
  });
  it("skips a broken entry with a message naming the field, keeping the others", () => {
    const r = parse(
      '{"prices":[{"input":1,"output":1},{"model":"a","input":-1,"output":1},' +
        '{"model":"b","input":0.0000001,"output":1},{"model":"c","output":1},' +
        '{"model":"d","input":1,"output":1,"price":2},7,{"model":"e","input":"1","output":1}]}',
    );
    expect(r.errors).toStrictEqual([
      "'prices[0].model' is required: a model name or glob such as qwen-turbo*; price skipped",
      "'prices[1].input' must be a number from 0 to 1000000 with at most 6 decimal places; price skipped",
      "'prices[2].input' must be a number from 0 to 1000000 with at most 6 decimal places; price skipped",
      "'prices[3].input' is required: the price per million tokens; price skipped",
      "'prices[4].price' is not a known field; ignored",
      "'prices[5]' must be an object; price skipped",
      "'prices[6].input' must be a number from 0 to 1000000 with at most 6 decimal places; price skipped",
    ]);
    expect(r.config.prices.prices.length).toBe(1);
    expect(r.config.prices.prices[0].model).toBe("d");
  });
  it("refuses a currency that is not an ISO 4217 code and a prices value that is not an array", () => {
    const r = parse('{"currency":"usd","prices":{"model":"x"},"gen_ai_metrics":"yes"}');
    expect(r.errors).toStrictEqual([
      "'currency' must be an ISO 4217 code of three capital letters (USD, CNY, EUR); using the default",
      "'prices' must be an array of objects; using the default",
      "'gen_ai_metrics' must be true or false; using the default",
    ]);
    expect(r.config.currency).toBe("USD");
    expect(r.config.prices.active).toBe(false);
  });
});
