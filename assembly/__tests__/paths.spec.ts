// SPDX-License-Identifier: Apache-2.0
// Path shapes: suffix matching, wildcards, the model from the path, the API from the shape.

import {
  compileShape,
  matchShape,
  pathEnd,
  percentDecode,
  queryHas,
  modelStart,
  modelEnd,
} from "../llm/paths";
import {
  API_DEFAULT,
  API_GEMINI,
  API_GEMINI_STREAM,
  API_BEDROCK,
  API_BEDROCK_STREAM,
  API_BEDROCK_INVOKE,
  API_BEDROCK_INVOKE_STREAM,
  API_OLLAMA,
  API_RESPONSES,
  API_RESPONSES_GET,
  API_EMBEDDINGS,
} from "../llm/apis";

function model(shape: string, path: string): string {
  const s = compileShape(shape);
  if (!matchShape(s, path, pathEnd(path))) return "<no match>";
  return modelStart < 0 ? "<none>" : percentDecode(path, modelStart, modelEnd);
}

describe("path shapes", () => {
  it("matches a literal as a suffix, before the query string", () => {
    const s = compileShape("/chat/completions");
    expect(matchShape(s, "/v1/chat/completions", 20)).toBe(true);
    const q = "/openai/v1/chat/completions?api-version=1";
    expect(matchShape(s, q, pathEnd(q))).toBe(true);
    expect(matchShape(s, "/v1/chat/completions/x", 22)).toBe(false);
    expect(matchShape(s, "/completions", 12)).toBe(false);
  });

  it("takes the model from the path, URL-decoded", () => {
    expect(model("/models/{model}:generateContent", "/v1beta/models/gemini-2.5-flash:generateContent")).toBe(
      "gemini-2.5-flash",
    );
    expect(
      model(
        "/models/{model}:streamGenerateContent",
        "/v1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse",
      ),
    ).toBe("gemini-2.0-flash-001");
    expect(
      model("/model/{model}/converse", "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"),
    ).toBe("anthropic.claude-3-5-sonnet-20240620-v1:0");
    expect(model("/model/{model}/converse", "/model/us.amazon.nova-pro-v1:0/converse")).toBe(
      "us.amazon.nova-pro-v1:0",
    );
    expect(
      model("/model/{model}/invoke", "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aprofile%2Fx/invoke"),
    ).toBe("arn:aws:bedrock:us-east-1:1:profile/x"); // an inference-profile ARN: its encoded slash keeps it one segment on the wire
    expect(model("/model/{model}/invoke", "/model/m%E2%82%AC/invoke")).toBe("m€");
    expect(model("/chat/completions", "/v1/chat/completions")).toBe("<none>");
  });

  it("keeps a malformed escape or non-UTF-8 as it came", () => {
    expect(percentDecode("/m%3/x", 0, 6)).toBe("/m%3/x");
    expect(percentDecode("a%zz", 0, 4)).toBe("a%zz");
    expect(percentDecode("a%FF", 0, 4)).toBe("a%FF");
    expect(percentDecode("a%0A", 0, 4)).toBe("a%0A");
  });

  it("a wildcard needs one or more characters and never crosses a slash", () => {
    const s = compileShape("/model/*/converse");
    expect(matchShape(s, "/model//converse", 16)).toBe(false);
    expect(matchShape(s, "/model/a/b/converse", 19)).toBe(false);
    expect(matchShape(s, "/x/model/a/converse", 19)).toBe(true);
  });

  it("knows the API from how the shape ends, and GET shapes", () => {
    expect(compileShape("/v1/chat/completions").api).toBe(API_DEFAULT);
    expect(compileShape("/models/{model}:generateContent").api).toBe(API_GEMINI);
    expect(compileShape("/models/{model}:streamGenerateContent").api).toBe(API_GEMINI_STREAM);
    expect(compileShape("/model/{model}/converse").api).toBe(API_BEDROCK);
    expect(compileShape("/model/{model}/converse-stream").api).toBe(API_BEDROCK_STREAM);
    expect(compileShape("/model/{model}/invoke").api).toBe(API_BEDROCK_INVOKE);
    expect(compileShape("/model/{model}/invoke-with-response-stream").api).toBe(API_BEDROCK_INVOKE_STREAM);
    expect(compileShape("/api/chat").api).toBe(API_OLLAMA);
    expect(compileShape("/responses").api).toBe(API_RESPONSES);
    expect(compileShape("/v2/embed").api).toBe(API_EMBEDDINGS);
    const get = compileShape("GET /responses/*");
    expect(get.get).toBe(true);
    expect(get.api).toBe(API_RESPONSES_GET);
    expect(compileShape("POST /x").get).toBe(false);
  });

  it("reads a query parameter exactly", () => {
    expect(queryHas("/v1/responses/r?stream=true", "stream=true")).toBe(true);
    expect(queryHas("/v1/responses/r?a=1&stream=true&b", "stream=true")).toBe(true);
    expect(queryHas("/v1/responses/r?stream=truer", "stream=true")).toBe(false);
    expect(queryHas("/v1/responses/r", "stream=true")).toBe(false);
  });
});
