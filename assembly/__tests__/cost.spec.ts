// SPDX-License-Identifier: Apache-2.0
// The cost module: prices as exact integers, model globs, the cost of a call from its counts as
// each API reports them, rounding to micro-units and the exact decimal. Expected values are
// worked out by hand in the comments, not by the module.

import {
  priceOfNumber,
  globMatch,
  Price,
  PriceTable,
  callCost,
  toMicros,
  costDecimal,
  INPUT_EXCLUDES_CACHE,
  OUTPUT_EXCLUDES_REASONING,
  COST_OVERFLOW,
  NO_PRICE,
} from "../telemetry/cost";

function price(model: string, input: i64, output: i64): Price {
  const p = new Price();
  p.model = model;
  p.input = input;
  p.output = output;
  return p;
}

describe("priceOfNumber", () => {
  it("reads a JSON number exactly when it has at most 6 places", () => {
    expect(priceOfNumber(0.05)).toBe(50000);
    expect(priceOfNumber(0.3)).toBe(300000);
    expect(priceOfNumber(0.000002)).toBe(2);
    expect(priceOfNumber(3.0)).toBe(3000000);
    expect(priceOfNumber(0.1 + 0.2)).toBe(-1); // 0.30000000000000004 is not 0.3
    expect(priceOfNumber(0.0000015)).toBe(-1);
    expect(priceOfNumber(123456.123456)).toBe(123456123456);
    expect(priceOfNumber(1000000)).toBe(1000000000000);
    expect(priceOfNumber(1000000.5)).toBe(-1);
    expect(priceOfNumber(-0.5)).toBe(-1);
    expect(priceOfNumber(NaN)).toBe(-1);
  });
});

describe("globMatch", () => {
  it("matches a prefix glob against two models and not a third", () => {
    expect(globMatch("qwen-turbo*", "qwen-turbo")).toBe(true);
    expect(globMatch("qwen-turbo*", "qwen-turbo-2024-11-01")).toBe(true);
    expect(globMatch("qwen-turbo*", "qwen-plus")).toBe(false);
    expect(globMatch("qwen-turbo*", "xqwen-turbo")).toBe(false);
  });
  it("needs the whole name to match", () => {
    expect(globMatch("qwen-turbo", "qwen-turbo")).toBe(true);
    expect(globMatch("qwen-turbo", "qwen-turbo-latest")).toBe(false);
    expect(globMatch("*-mini", "gpt-4o-mini")).toBe(true);
    expect(globMatch("a*b*c", "aXbYc")).toBe(true);
    expect(globMatch("a*b*c", "aXbY")).toBe(false);
    expect(globMatch("a*b*c", "abcbc")).toBe(true);
    expect(globMatch("*", "")).toBe(true);
    expect(globMatch("**", "anything")).toBe(true);
    expect(globMatch("a", "")).toBe(false);
  });
});

describe("PriceTable", () => {
  it("takes the first matching entry, by request model, else response model", () => {
    const t = new PriceTable();
    expect(t.active).toBe(false);
    t.prices.push(price("qwen-turbo", 1, 1));
    t.prices.push(price("qwen-*", 2, 2));
    t.prices.push(price("gpt-4o-2024-*", 3, 3));
    expect(t.active).toBe(true);
    expect(t.priceOf("qwen-turbo", null)!.input).toBe(1);
    expect(t.priceOf("qwen-plus", "qwen-plus")!.input).toBe(2);
    expect(t.priceOf("gpt-4o", "gpt-4o-2024-08-06")!.input).toBe(3);
    expect(t.priceOf("gpt-4o", "gpt-4o")).toBeNull();
    expect(t.priceOf(null, null)).toBeNull();
    expect(t.priceOf("", "")).toBeNull();
  });
});

/** input 0.05, output 0.2, cached input 0.02 per million tokens. */
function sample(): Price {
  const p = price("m", 50000, 200000);
  p.cachedInput = 20000;
  return p;
}

describe("callCost", () => {
  it("prices an OpenAI-style call: cached inside the prompt, reasoning inside the completion", () => {
    // 600 uncached x 50000 + 400 cached x 20000 + 500 completion (reasoning at output) x 200000
    // = 30,000,000 + 8,000,000 + 100,000,000 = 138,000,000 pico = 0.000138.
    const c = callCost(sample(), 1000, 500, 400, -1, 100, 0);
    expect(c).toBe(138000000);
    expect(toMicros(c)).toBe(138);
    expect(costDecimal(c)).toBe("0.000138");
  });
  it("prices reasoning apart when the entry has a reasoning price", () => {
    const r = price("m", 50000, 200000);
    r.reasoning = 1000000; // 1.0
    // 1000 x 50000 + 400 x 200000 + 100 x 1,000,000 = 50,000,000 + 80,000,000 + 100,000,000.
    expect(callCost(r, 1000, 500, -1, -1, 100, 0)).toBe(230000000);
  });
  it("prices an Anthropic-style call: cache reads and writes beside the input", () => {
    const a = price("m", 50000, 200000);
    a.cachedInput = 20000;
    a.cacheWrite = 62500; // 0.0625
    // 600 x 50000 + 400 x 20000 + 200 x 62500 + 500 x 200000
    // = 30,000,000 + 8,000,000 + 12,500,000 + 100,000,000 = 150,500,000.
    const c = callCost(a, 600, 500, 400, 200, -1, INPUT_EXCLUDES_CACHE);
    expect(c).toBe(150500000);
    expect(costDecimal(c)).toBe("0.0001505");
    // 150.5 micro-units: a tie, rounded to the even 150.
    expect(toMicros(c)).toBe(150);
  });
  it("prices cache writes at input and cached at input when the entry has no such price", () => {
    const plain = price("m", 50000, 200000);
    expect(plain.cacheWrite).toBe(NO_PRICE);
    // (600 + 400 + 200) x 50000 = 60,000,000.
    expect(callCost(plain, 600, 0, 400, 200, -1, INPUT_EXCLUDES_CACHE)).toBe(60000000);
  });
  it("prices a Gemini-style call: thoughts beside the candidates", () => {
    const g = price("m", 50000, 200000);
    g.reasoning = 3500000; // 3.5
    // 10 x 50000 + 100 x 200000 + 50 x 3,500,000 = 500,000 + 20,000,000 + 175,000,000.
    expect(callCost(g, 10, 100, -1, -1, 50, OUTPUT_EXCLUDES_REASONING)).toBe(195500000);
    // Without a reasoning price the thoughts are output: 10 x 50000 + 150 x 200000.
    expect(callCost(price("m", 50000, 200000), 10, 100, -1, -1, 50, OUTPUT_EXCLUDES_REASONING)).toBe(
      30500000,
    );
  });
  it("never prices a part below zero when a provider's parts exceed its total", () => {
    // cached 50 > prompt 10: the uncached rest is 0; 50 x 20000 = 1,000,000.
    expect(callCost(sample(), 10, -1, 50, -1, -1, 0)).toBe(1000000);
  });
  it("counts nothing for counts not reported", () => {
    expect(callCost(sample(), -1, -1, -1, -1, -1, 0)).toBe(0);
  });
  it("reports an overflow instead of wrapping", () => {
    const big = price("m", 1000000000000, 1000000000000);
    expect(callCost(big, 9007199254740991, 0, -1, -1, -1, 0)).toBe(COST_OVERFLOW);
    expect(callCost(big, 9000000, 9000000, -1, -1, -1, 0)).toBe(COST_OVERFLOW);
    // 4,000,000 x 10^12 + 4,000,000 x 10^12 = 8 x 10^18 fits.
    expect(callCost(big, 4000000, 4000000, -1, -1, -1, 0)).toBe(8000000000000000000);
  });
});

describe("rounding and the decimal", () => {
  it("rounds to the nearest micro-unit, ties to even", () => {
    expect(toMicros(0)).toBe(0);
    expect(toMicros(499999)).toBe(0);
    expect(toMicros(500000)).toBe(0);
    expect(toMicros(500001)).toBe(1);
    expect(toMicros(1500000)).toBe(2);
    expect(toMicros(2500000)).toBe(2);
    expect(toMicros(2500001)).toBe(3);
    expect(toMicros(3499999)).toBe(3);
  });
  it("prints the exact cost without trailing zeros", () => {
    expect(costDecimal(0)).toBe("0");
    expect(costDecimal(1)).toBe("0.000000000001");
    expect(costDecimal(50000)).toBe("0.00000005");
    expect(costDecimal(1000000000000)).toBe("1");
    expect(costDecimal(1250000000000)).toBe("1.25");
    expect(costDecimal(12000000000001)).toBe("12.000000000001");
  });
});
