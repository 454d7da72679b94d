// SPDX-License-Identifier: Apache-2.0
// Token budgets: key templates (parsing, rendering, missing fields), the check path, the update
// body, the denial body, the check's answer, and the `rate_limit` option.

import {
  KeyTemplate,
  KeySource,
  renderKey,
  checkPath,
  updateBody,
  denialBody,
  percentEncode,
  CheckAnswer,
  ANSWER_ALLOW,
  ANSWER_DENY,
  ANSWER_FAILED,
  PART_HEADER,
  PART_SOURCE_WORKLOAD,
  PART_SOURCE_NAMESPACE,
  PART_MODEL,
} from "../llm/budget";
import { parseConfig } from "../config/config";

class Values extends KeySource {
  value(kind: u8, header: ArrayBuffer): string | null {
    if (kind == PART_HEADER) return String.UTF8.decode(header) == "user-type" ? "subscriber" : null;
    if (kind == PART_SOURCE_WORKLOAD) return "sleep";
    if (kind == PART_SOURCE_NAMESPACE) return "default";
    return null;
  }
}

function answer(text: string, a: CheckAnswer): u8 {
  const bytes = String.UTF8.encode(text);
  return a.read(changetype<usize>(bytes), <usize>bytes.byteLength);
}

describe("key templates", () => {
  it("render fields and text, and leave out a key whose fields are all missing", () => {
    const v = new Values();
    expect(renderKey(KeyTemplate.parse("{source_workload}.{source_namespace}"), v)).toBe("sleep.default");
    expect(renderKey(KeyTemplate.parse("tier-{header:User-Type}"), v)).toBe("tier-subscriber");
    expect(renderKey(KeyTemplate.parse("{header:x-tenant}/{model}"), v)).toBeNull();
    expect(renderKey(KeyTemplate.parse("{header:x-tenant}/{source_workload}"), v)).toBe("/sleep");
  });
  it("refuse unknown fields, unbalanced braces and a template without a field", () => {
    expect(KeyTemplate.parse("{user}").error).not.toBeNull();
    expect(KeyTemplate.parse("{route").error).not.toBeNull();
    expect(KeyTemplate.parse("route}").error).not.toBeNull();
    expect(KeyTemplate.parse("everyone").error).not.toBeNull();
    expect(KeyTemplate.parse("{header:}").error).not.toBeNull();
    expect(KeyTemplate.parse("{model}").uses(PART_MODEL)).toBe(true);
  });
});

describe("the service's requests", () => {
  it("percent-encode the JSON list of keys in the check path", () => {
    expect(checkPath(["sleep.default", 'a"b'])).toBe(
      "/ratelimit?ratelimit_keys=%5B%22sleep.default%22%2C%22a%5C%22b%22%5D",
    );
    expect(percentEncode("é+ ~")).toBe("%C3%A9%2B%20~");
  });
  it("build the update body with every count, 0 for one not reported", () => {
    expect(updateBody(["k"], 10, -1, 10)).toBe(
      '{"ratelimit_keys":["k"],"prompt_tokens":10,"completion_tokens":0,"total_tokens":10}',
    );
  });
  it("answer a denial in the OpenAI error shape", () => {
    expect(denialBody('key "k" is spent')).toBe(
      '{"error":{"message":"Token rate limit exceeded: key \\"k\\" is spent","type":"tokens","param":null,"code":"rate_limit_exceeded"}}',
    );
  });
});

describe("the check's answer", () => {
  it("reads allow, description and retry_after_seconds; anything else is a failure", () => {
    const a = new CheckAnswer();
    expect(answer('{"allow":true,"description":""}', a)).toBe(ANSWER_ALLOW);
    expect(answer('{"allow":false,"description":"spent","retry_after_seconds":30}', a)).toBe(ANSWER_DENY);
    expect(a.description).toBe("spent");
    expect(a.retryAfter).toBe(30);
    expect(answer('{"allow":false}', a)).toBe(ANSWER_DENY);
    expect(a.retryAfter).toBe(-1);
    expect(answer('{"allow":"no"}', a)).toBe(ANSWER_FAILED);
    expect(answer('{"description":"x"}', a)).toBe(ANSWER_FAILED);
    expect(answer('{"allow":true', a)).toBe(ANSWER_FAILED);
    expect(answer("upstream connect error", a)).toBe(ANSWER_FAILED);
  });
});

describe("the rate_limit option", () => {
  it("reads the fields, with the cluster's host as the default authority", () => {
    const r = parseConfig(
      Uint8Array.wrap(
        String.UTF8.encode(
          '{"rate_limit":{"cluster":"outbound|80||rl.default.svc.cluster.local","keys":["{source_workload}","{x}"],"timeout_ms":0,"fail_open":false}}',
        ),
      ),
    );
    const b = r.config.budget!;
    expect(b.authority).toBe("rl.default.svc.cluster.local");
    expect(b.templates.length).toBe(1);
    expect(b.timeoutMs).toBe(200);
    expect(b.failOpen).toBe(false);
    expect(b.rejectedCode).toBe(429);
    expect(r.errors.length).toBe(2);
  });
  it("stays off without a cluster or a valid key", () => {
    expect(
      parseConfig(Uint8Array.wrap(String.UTF8.encode('{"rate_limit":{"keys":["{route}"]}}'))).config.budget,
    ).toBeNull();
    expect(
      parseConfig(Uint8Array.wrap(String.UTF8.encode('{"rate_limit":{"cluster":"c","keys":["x"]}}'))).config
        .budget,
    ).toBeNull();
    expect(parseConfig(Uint8Array.wrap(String.UTF8.encode('{"rate_limit":[]}'))).errors[0]).toBe(
      "'rate_limit' must be an object; using the default",
    );
  });
});
