// SPDX-License-Identifier: Apache-2.0
// Telemetry naming: tag values can never break a stat name.

import { tagValue, tagSuffix, MAX_TAG_LENGTH } from "../telemetry/names";

describe("tagValue", () => {
  it("keeps ordinary model names", () => {
    expect(tagValue("qwen1.5-72b-chat")).toBe("qwen1.5-72b-chat");
    expect(tagValue("accounts/fireworks/models/llama-v3p1:latest")).toBe(
      "accounts/fireworks/models/llama-v3p1:latest",
    );
  });
  it("replaces delimiters and control characters", () => {
    expect(tagValue("a|b=c\nd")).toBe("a_b_c_d");
  });
  it("caps the length without splitting a surrogate pair", () => {
    expect(tagValue("x".repeat(300)).length).toBe(MAX_TAG_LENGTH);
    const s = tagValue("x".repeat(MAX_TAG_LENGTH - 1) + "😀");
    expect(s.length).toBe(MAX_TAG_LENGTH - 1);
  });
  it("turns an empty value into unknown", () => {
    expect(tagValue("")).toBe("unknown");
  });
});

describe("stat names", () => {
  it("encodes the four dimensions in order", () => {
    expect(tagSuffix("sleep", "default", "dashscope.aliyuncs.com", "qwen-turbo")).toBe(
      "|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=dashscope.aliyuncs.com|llmproxy_model=qwen-turbo",
    );
  });
});
