// SPDX-License-Identifier: Apache-2.0
// Configuration: empty means defaults; every problem is reported and never traps.

import { parseConfig, ConfigResult, DEFAULT_PATHS } from "../config/config";

function parse(text: string): ConfigResult {
  return parseConfig(Uint8Array.wrap(String.UTF8.encode(text)));
}

describe("parseConfig", () => {
  it("treats an empty configuration as the defaults", () => {
    const r = parse("  ");
    expect(r.errors.length).toBe(0);
    expect(r.config.paths.length).toBe(DEFAULT_PATHS.length);
  });
  it("reads paths", () => {
    const r = parse('{"paths":["/api/chat"]}');
    expect(r.errors.length).toBe(0);
    expect(r.config.matchesPath("/api/chat?x=1")).toBe(true);
    expect(r.config.matchesPath("/v1/chat/completions")).toBe(false);
  });
  it("reports malformed JSON without trapping", () => {
    const r = parse('{"paths":[');
    expect(r.errors[0]).toBe("configuration is not valid JSON; using defaults");
    expect(r.config.matchesPath("/v1/chat/completions")).toBe(true);
  });
  it("names an unknown key", () => {
    expect(parse('{"x":1}').errors[0]).toBe("unknown configuration key 'x' ignored");
  });
});
