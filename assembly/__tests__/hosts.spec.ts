// SPDX-License-Identifier: Apache-2.0
// Host names: cluster and authority parsing, ASCII case.

import { serviceFromCluster, hostFromAuthority, asciiLower, startsWithIgnoreCase } from "../llm/hosts";

describe("host names", () => {
  it("reads the service of an Istio cluster", () => {
    expect(serviceFromCluster("outbound|80||dashscope.aliyuncs.com")).toBe("dashscope.aliyuncs.com");
    expect(serviceFromCluster("outbound|443|v1|api.openai.com")).toBe("api.openai.com");
    expect(serviceFromCluster("PassthroughCluster")).toBeNull();
    expect(serviceFromCluster("outbound|80||")).toBeNull();
  });
  it("strips the port of an authority", () => {
    expect(hostFromAuthority("api.openai.com:443")).toBe("api.openai.com");
    expect(hostFromAuthority("api.openai.com")).toBe("api.openai.com");
    expect(hostFromAuthority("[::1]:8080")).toBe("[::1]");
  });
  it("lowers ASCII only, and compares prefixes without case", () => {
    expect(asciiLower("Text/Event-Stream")).toBe("text/event-stream");
    expect(asciiLower("already")).toBe("already");
    expect(asciiLower("ÄB")).toBe("Äb");
    expect(startsWithIgnoreCase("Application/JSON; charset=utf-8", "application/json")).toBe(true);
    expect(startsWithIgnoreCase("application/js", "application/json")).toBe(false);
  });
});
