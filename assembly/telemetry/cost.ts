// SPDX-License-Identifier: Apache-2.0
// The money a call cost, from its own token counts and a configured price list, in exact integer
// arithmetic. Pure: no host imports.
//
// Units. A price is per million tokens, kept as an integer number of millionths of the currency
// (a price has at most 6 decimal places, so it is held exactly: 0.05 is 50000). A token priced at
// P millionths per million costs P * 10^-12 of the currency, so the cost of a call is the integer
// sum of tokens * P in 10^-12 units ("pico" below), with no rounding at all. It is rounded once,
// to micro-units (10^-6) for the counter, and printed exactly for filter state.

/** The largest price per million tokens accepted, in the currency. */
export const MAX_PRICE: i64 = 1_000_000;
/** A price not set (the entry's fallback applies). */
export const NO_PRICE: i64 = -1;
/** A cost that could not be computed: a sum beyond 64 bits (not reachable with real counts). */
export const COST_OVERFLOW: i64 = -1;

const PICO_PER_MICRO: u64 = 1_000_000;
const PICO_PER_UNIT: u64 = 1_000_000_000_000;

/**
 * A price (a JSON number) as millionths of the currency, -1 when it is not a non-negative price
 * of at most 6 decimal places within MAX_PRICE. The candidate m = round(x * 10^6) is the price
 * exactly when m / 10^6, a division of two integers below 2^53 and so correctly rounded, gives
 * back the very double the configuration's text was read as: `0.05` is 50000, `0.0000015` is
 * refused.
 */
export function priceOfNumber(x: f64): i64 {
  if (!(x >= 0) || x > <f64>MAX_PRICE) return -1;
  const m = Math.round(x * 1e6);
  return m / 1e6 == x ? <i64>m : -1;
}

/**
 * Whether `name` matches `glob`, where `*` stands for any run of characters (also none) and
 * every other character for itself; the whole name must match. Iterative, with one backtrack
 * point: linear in practice and never recursive.
 */
export function globMatch(glob: string, name: string): bool {
  const g = glob.length;
  const n = name.length;
  let gi = 0;
  let ni = 0;
  let star = -1;
  let mark = 0;
  while (ni < n) {
    if (gi < g && glob.charCodeAt(gi) == 0x2a) {
      star = gi++;
      mark = ni;
    } else if (gi < g && glob.charCodeAt(gi) == name.charCodeAt(ni)) {
      gi++;
      ni++;
    } else if (star >= 0) {
      gi = star + 1;
      ni = ++mark;
    } else {
      return false;
    }
  }
  while (gi < g && glob.charCodeAt(gi) == 0x2a) gi++;
  return gi == g;
}

/** One entry of `prices`: a model glob and its prices in millionths per million tokens. */
export class Price {
  model: string = "";
  input: i64 = 0;
  output: i64 = 0;
  /** NO_PRICE: as input. */
  cachedInput: i64 = NO_PRICE;
  /** NO_PRICE: as input. */
  cacheWrite: i64 = NO_PRICE;
  /** NO_PRICE: as output. */
  reasoning: i64 = NO_PRICE;
}

/** The configured prices, in configuration order: the first match wins. */
export class PriceTable {
  prices: Price[] = [];

  get active(): bool {
    return this.prices.length > 0;
  }

  /** The first entry whose glob matches the model, or null. */
  find(model: string | null): Price | null {
    if (model === null || model.length == 0) return null;
    const prices = this.prices;
    for (let i = 0, n = prices.length; i < n; i++) {
      const p = unchecked(prices[i]);
      if (globMatch(p.model, model)) return p;
    }
    return null;
  }

  /** The price of a call: by its request model, else by the model the provider says answered. */
  priceOf(requestModel: string | null, responseModel: string | null): Price | null {
    const p = this.find(requestModel);
    return p !== null ? p : this.find(responseModel);
  }
}

/**
 * How an API's counts relate (see tokenAccounting in genai.ts): whether its prompt count leaves
 * out the cached and cache-write tokens (Anthropic, Bedrock: they are reported beside it), and
 * whether its completion count leaves out the reasoning tokens (Gemini: thoughts beside the
 * candidates). Where a flag is clear, the part is inside the total and is taken out of it.
 */
export const INPUT_EXCLUDES_CACHE: u8 = 1;
export const OUTPUT_EXCLUDES_REASONING: u8 = 2;

/** A count the response did not report is none. */
function count(n: i64): u64 {
  return n > 0 ? <u64>n : 0;
}

/** tokens * price + sum, or COST_OVERFLOW past 64 bits. */
function term(sum: i64, tokens: u64, price: i64): i64 {
  if (sum < 0 || tokens == 0 || price == 0) return sum;
  const p = <u64>price;
  if (tokens > <u64>i64.MAX_VALUE / p) return COST_OVERFLOW;
  const t = tokens * p;
  if (t > <u64>i64.MAX_VALUE - <u64>sum) return COST_OVERFLOW;
  return sum + <i64>t;
}

/**
 * The exact cost of a call in 10^-12 units of the currency, from its counts (NO_COUNT, -1, for a
 * count not reported) and how its API reports them. Prompt tokens: the cached ones at
 * `cached_input`, those written to the cache at `cache_write`, the rest at `input`. Completion
 * tokens: the reasoning ones at `reasoning`, the rest at `output`. A part larger than the count
 * it is said to be inside of (a provider's inconsistency) leaves that rest at zero, never below.
 */
export function callCost(
  p: Price,
  prompt: i64,
  completion: i64,
  cached: i64,
  cacheWrite: i64,
  reasoning: i64,
  accounting: u8,
): i64 {
  const cachedN = count(cached);
  const writeN = count(cacheWrite);
  const reasoningN = count(reasoning);
  let input = count(prompt);
  if ((accounting & INPUT_EXCLUDES_CACHE) == 0) {
    const parts = cachedN + writeN;
    input = input > parts ? input - parts : 0;
  }
  let output = count(completion);
  if ((accounting & OUTPUT_EXCLUDES_REASONING) == 0) output = output > reasoningN ? output - reasoningN : 0;
  let sum: i64 = 0;
  sum = term(sum, input, p.input);
  sum = term(sum, cachedN, p.cachedInput == NO_PRICE ? p.input : p.cachedInput);
  sum = term(sum, writeN, p.cacheWrite == NO_PRICE ? p.input : p.cacheWrite);
  sum = term(sum, output, p.output);
  sum = term(sum, reasoningN, p.reasoning == NO_PRICE ? p.output : p.reasoning);
  return sum;
}

/**
 * A cost in 10^-12 units as whole micro-units (10^-6) of the currency, rounded to the nearest,
 * a tie to the even neighbour (banker's rounding: over many calls ties round up as often as
 * down, so the counter does not drift from the sum of the exact costs).
 */
export function toMicros(pico: i64): i64 {
  if (pico <= 0) return 0;
  const p = <u64>pico;
  const q = p / PICO_PER_MICRO;
  const r = p % PICO_PER_MICRO;
  const half = PICO_PER_MICRO / 2;
  if (r > half || (r == half && (q & 1) == 1)) return <i64>(q + 1);
  return <i64>q;
}

/** Where costBytes writes: 19 digits, a point and 12 decimals fit. */
export const COST_BYTES: usize = memory.data(32);

/**
 * A cost in 10^-12 units as an exact decimal in the currency, in ASCII at COST_BYTES: `0.00006`,
 * `1.25`, `0` (no exponent, no trailing zeros, at most 12 decimal places). Returns its length.
 * Written in place, so publishing it allocates nothing.
 */
export function costBytes(pico: i64): i32 {
  const out = COST_BYTES;
  if (pico <= 0) {
    store<u8>(out, 0x30);
    return 1;
  }
  const unit = <i64>PICO_PER_UNIT;
  let whole = pico / unit;
  let frac = pico % unit;
  let n = 0;
  let v = whole;
  do {
    n++;
    v /= 10;
  } while (v != 0);
  for (let i = n; i > 0; i--) {
    store<u8>(out + <usize>(i - 1), <u8>(0x30 + (whole % 10)));
    whole /= 10;
  }
  if (frac == 0) return n;
  let places = 12;
  while (frac % 10 == 0) {
    frac /= 10;
    places--;
  }
  store<u8>(out + <usize>n, 0x2e);
  for (let i = places; i > 0; i--) {
    store<u8>(out + <usize>(n + i), <u8>(0x30 + (frac % 10)));
    frac /= 10;
  }
  return n + 1 + places;
}

/** The same decimal as a string. */
export function costDecimal(pico: i64): string {
  return String.UTF8.decodeUnsafe(COST_BYTES, <usize>costBytes(pico));
}
