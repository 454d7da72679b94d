// SPDX-License-Identifier: Apache-2.0
// Configuration: empty means defaults; every problem is reported and never traps.

import { parseConfig, ConfigResult, DEFAULT_PATHS, IGNORED_CONSEQUENCE } from "../config/config";
import { syntaxError } from "../config/syntax";

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
    expect(r.errors[0]).toBe(
      "configuration is not valid JSON at line 1, column 11 (byte 10): expected a value (object, array, string, number, true, false or null) but found the end of the configuration; " +
        IGNORED_CONSEQUENCE,
    );
    expect(r.failed).toBe(true);
    expect(r.config.matchesPath("/v1/chat/completions")).toBe(true);
  });
  it("names an unknown key", () => {
    expect(parse('{"x":1}').errors[0]).toBe("unknown configuration key 'x' ignored");
  });
});

function where(text: string): string | null {
  return syntaxError(Uint8Array.wrap(String.UTF8.encode(text)));
}

describe("syntaxError", () => {
  it("is null for valid JSON", () => {
    expect(where('{"a":[1,-2.5e+3,true,false,null,"\\u00e9\\n"],"b":{}}')).toBeNull();
    expect(where(" [] ")).toBeNull();
  });
  it("says where and what was expected", () => {
    expect(where('{"a" 1}')).toBe(
      "line 1, column 6 (byte 5): expected ':' after the member name but found '1'",
    );
    expect(where("{\n\n  ,")).toBe(
      "line 3, column 3 (byte 5): expected a member name in double quotes but found ','",
    );
    expect(where("[1 2]")).toBe("line 1, column 4 (byte 3): expected ',' or ']' but found '2'");
    expect(where('"\\x"')).toBe(
      "line 1, column 3 (byte 2): expected an escape: one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX but found 'x'",
    );
    expect(where("-")).toBe(
      "line 1, column 2 (byte 1): expected a digit but found the end of the configuration",
    );
    expect(where("")).toBe(
      "line 1, column 1 (byte 0): expected a value (object, array, string, number, true, false or null) but found the end of the configuration",
    );
  });
  it("checks UTF-8", () => {
    const bytes = new Uint8Array(4);
    bytes[0] = 0x22;
    bytes[1] = 0xc0; // overlong
    bytes[2] = 0x80;
    bytes[3] = 0x22;
    expect(syntaxError(bytes)).toBe("line 1, column 2 (byte 1): expected valid UTF-8 but found byte 0xc0");
  });
  it("caps nesting as the scanner does", () => {
    expect(where("[".repeat(1025) + "]".repeat(1025))).not.toBeNull();
    expect(where("[".repeat(1024) + "]".repeat(1024))).toBeNull();
  });
});
