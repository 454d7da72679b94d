// SPDX-License-Identifier: Apache-2.0
// Provider routing: exact host matching, route overrides, and the `providers` option's
// validation (one message per problem, the broken entry skipped, never a key in a message).

import { JSON } from "assemblyscript-json/assembly";
import { Routing, sameHost, withQuery, keyClusterHost, AUTH_X_API_KEY, STREAM_UNSET } from "../llm/routing";
import {
  readProviders,
  resolveKeys,
  needsEnvironment,
  lookup,
  validHost,
  validUnicode,
  keyProblem,
  trimEnd,
} from "../config/providers";

function routingOf(text: string, errors: string[]): Routing {
  const r = new Routing();
  readProviders(JSON.parse(text), r, errors);
  return r;
}

describe("host matching", () => {
  it("is exact, case-insensitive and ignores the port", () => {
    const r = routingOf('[{"host":"DashScope.aliyuncs.com"}]', []);
    expect(r.find("dashscope.aliyuncs.com")).not.toBeNull();
    expect(r.find("DASHSCOPE.ALIYUNCS.COM:80")).not.toBeNull();
    expect(r.find("dashscope.aliyuncs.com.evil.example")).toBeNull();
    expect(r.find("xdashscope.aliyuncs.com")).toBeNull();
    expect(r.find("aliyuncs.com")).toBeNull();
    expect(r.find("")).toBeNull();
    expect(sameHost("a.b", "A.B")).toBe(true);
    expect(sameHost("a.b", "a.c")).toBe(false);
  });
  it("keeps a query string on a replaced path", () => {
    expect(withQuery("/v1/chat/completions", "/?a=1")).toBe("/v1/chat/completions?a=1");
    expect(withQuery("/v1/chat/completions", "/")).toBe("/v1/chat/completions");
  });
});

describe("routes", () => {
  it("lay their fields over the provider's", () => {
    const errors: string[] = [];
    const r = routingOf(
      '[{"host":"h","path":"/p","model":"a","stream":true,"api_key_env":"K","auth":"x-api-key",' +
        '"routes":{"vip-route":{"model":"b"},"own":{"api_key":"sk-route","path":"/q","stream":false}}}]',
      errors,
    );
    expect(errors.length).toBe(0);
    const p = r.find("h")!;
    expect(p.targetFor(null).model).toBe("a");
    expect(p.targetFor("").model).toBe("a");
    expect(p.targetFor("unknown").model).toBe("a");
    const vip = p.targetFor("vip-route");
    expect(vip.model).toBe("b");
    expect(vip.path).toBe("/p");
    expect(vip.apiKeyEnv).toBe("K");
    expect(vip.stream).toBe(1);
    const own = p.targetFor("own");
    expect(own.apiKey).toBe("sk-route");
    expect(own.apiKeyEnv).toBe("");
    expect(own.path).toBe("/q");
    expect(own.stream).toBe(0);
    expect(own.auth).toBe(AUTH_X_API_KEY);
    expect(needsEnvironment(r)).toBe(true);
  });
  it("get their keys from the environment, once per missing variable", () => {
    const errors: string[] = [];
    const r = routingOf(
      '[{"host":"h","api_key_env":"K","routes":{"a":{"model":"m"},"b":{"api_key":"sk-b"}}}]',
      errors,
    );
    resolveKeys(r, ["OTHER=1", "K="], errors);
    expect(errors.length).toBe(1);
    expect(errors[0].includes("api_key_env' names a variable that the VM environment does not have")).toBe(
      true,
    );
    expect(errors[0].includes("names K")).toBe(false);
    const p = r.find("h")!;
    expect(p.target.authValue).toBeNull();
    expect(String.UTF8.decode(p.targetFor("b").authValue!)).toBe("Bearer sk-b");
    const ok: string[] = [];
    const r2 = routingOf('[{"host":"h","api_key_env":"K","auth":"api-key"}]', ok);
    resolveKeys(r2, ["K=sk-env"], ok);
    expect(ok.length).toBe(0);
    expect(String.UTF8.decode(r2.find("h")!.target.authName)).toBe("api-key");
    expect(String.UTF8.decode(r2.find("h")!.target.authValue!)).toBe("sk-env");
    expect(lookup(["KEY=a=b"], "KEY")).toBe("a=b");
    expect(lookup(["KEYS=x"], "KEY")).toBeNull();
  });
});

describe("validation", () => {
  it("reports each problem once, names the field, and never shows a key", () => {
    const errors: string[] = [];
    const r = routingOf(
      '[{"host":"a","api_key":"sk-secret","api_key_env":"E"},{"path":"/x"},{"host":"b","model":"",' +
        '"stream":"no"},{"host":"c","routes":{"r":1,"s":{"api_key":"sk-secret2","path":"x"}}},7]',
      errors,
    );
    expect(errors).toStrictEqual([
      "'providers[0]' sets both api_key and api_key_env; set one; provider skipped",
      "'providers[1].host' is required: a host name; provider skipped",
      "'providers[2].model' must be a non-empty string; provider skipped",
      "'providers[2].stream' must be true or false; provider skipped",
      "'providers[3].routes.r' must be an object; route skipped",
      "'providers[3].routes.s.path' must be a string starting with '/'; route skipped",
      "'providers[4]' must be an object; provider skipped",
    ]);
    expect(r.providers.length).toBe(1);
    expect(r.find("c")!.routes.size).toBe(0);
    expect(r.find("c")!.target.stream).toBe(STREAM_UNSET);
    for (let i = 0; i < errors.length; i++) expect(errors[i].includes("sk-")).toBe(false);
  });
});

describe("the clusters a key may go through", () => {
  it("only outbound|<port>|<subset>|<host>, with a bare host", () => {
    expect(keyClusterHost("outbound|80||dashscope.aliyuncs.com")).toBe("dashscope.aliyuncs.com");
    expect(keyClusterHost("outbound|443|v1|api.openai.com")).toBe("api.openai.com");
    expect(keyClusterHost("inbound|80||dashscope.aliyuncs.com")).toBeNull();
    expect(keyClusterHost("outbound|443||dashscope.aliyuncs.com:443")).toBeNull();
    expect(keyClusterHost("outbound|x||dashscope.aliyuncs.com")).toBeNull();
    expect(keyClusterHost("outbound|||dashscope.aliyuncs.com")).toBeNull();
    expect(keyClusterHost("outbound|80|dashscope.aliyuncs.com")).toBeNull();
    expect(keyClusterHost("outbound|80||a|b")).toBeNull();
    expect(keyClusterHost("outbound|80||")).toBeNull();
    expect(keyClusterHost("PassthroughCluster")).toBeNull();
    expect(keyClusterHost("")).toBeNull();
  });
  it("finds the provider by the exact host, never by stripping a port", () => {
    const r = routingOf('[{"host":"dashscope.aliyuncs.com"}]', []);
    expect(r.forCluster("outbound|80||DashScope.aliyuncs.com")).not.toBeNull();
    expect(r.forCluster("outbound|443||dashscope.aliyuncs.com:443")).toBeNull();
    expect(r.forCluster("inbound|80||dashscope.aliyuncs.com")).toBeNull();
    expect(r.forCluster("outbound|80||dashscope.aliyuncs.com.evil")).toBeNull();
  });
});

describe("configured values", () => {
  it("hosts: names or [IPv6], no port, scheme or path", () => {
    expect(validHost("dashscope.aliyuncs.com")).toBe(true);
    expect(validHost("ollama_internal")).toBe(true);
    expect(validHost("[::1]")).toBe(true);
    expect(validHost("a.example:443")).toBe(false);
    expect(validHost("a..example")).toBe(false);
    expect(validHost(".a")).toBe(false);
    expect(validHost("a.")).toBe(false);
    expect(validHost("a/b")).toBe(false);
    expect(validHost("[::1]:80")).toBe(false);
    expect(validHost("a|b")).toBe(false);
    expect(validHost("")).toBe(false);
  });
  it("Unicode: a lone surrogate is refused, a pair is not", () => {
    expect(validUnicode("qwen")).toBe(true);
    expect(validUnicode("m-\ud83d\ude00")).toBe(true);
    expect(validUnicode("q\ud800")).toBe(false);
    expect(validUnicode("\udc00q")).toBe(false);
    expect(validUnicode("\ud800\ud800")).toBe(false);
  });
  it("keys: trailing white space trimmed; control characters and more than 8 KiB refused", () => {
    expect(trimEnd("sk-a\r\n \t")).toBe("sk-a");
    expect(trimEnd(" sk-a")).toBe(" sk-a");
    expect(keyProblem("sk-a")).toBeNull();
    expect(keyProblem("sk-a\nb")).not.toBeNull();
    expect(keyProblem("sk-a\u007fb")).not.toBeNull();
    expect(keyProblem("k".repeat(8192))).toBeNull();
    expect(keyProblem("k".repeat(8193))).not.toBeNull();
    // 8 KiB counts UTF-8 bytes: 4097 two-byte characters are too many.
    expect(keyProblem("\u00e9".repeat(4097))).not.toBeNull();
  });
});
