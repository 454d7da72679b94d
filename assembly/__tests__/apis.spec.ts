// SPDX-License-Identifier: Apache-2.0
// The per-API rules a path shape selects: where the stream flag comes from, the response's
// framing and format, which counts are which.

import { compileShape, streamOfPath } from "../llm/paths";
import { DEFAULT_API, STREAM_FROM_BODY } from "../llm/apis";

describe("API rules", () => {
  it("a shape that names no API gets the default rules", () => {
    const s = compileShape("/v1/chat/completions");
    expect(s.rules === DEFAULT_API).toBe(true);
    expect(s.native).toBe(false);
    expect(s.rules.stream).toBe(STREAM_FROM_BODY);
    expect(streamOfPath(s.rules, "/v1/chat/completions")).toBe(-1);
    expect(compileShape("GET /v1/models").rules === DEFAULT_API).toBe(true);
  });

  it("the stream flag comes from the path, the query or the body", () => {
    const gemini = compileShape("/models/{model}:streamGenerateContent").rules;
    expect(streamOfPath(gemini, "/v1beta/models/g:streamGenerateContent?alt=sse")).toBe(1);
    expect(streamOfPath(compileShape("/model/{model}/converse").rules, "/model/m/converse")).toBe(0);
    const poll = compileShape("GET /responses/*").rules;
    expect(streamOfPath(poll, "/v1/responses/r?stream=true")).toBe(1);
    expect(streamOfPath(poll, "/v1/responses/r")).toBe(0);
    const ollama = compileShape("/api/chat").rules;
    expect(streamOfPath(ollama, "/api/chat")).toBe(-1);
    expect(ollama.streamsByDefault).toBe(true);
  });

  it("framing, format and counts per API", () => {
    expect(compileShape("/models/{model}:streamGenerateContent").rules.jsonArray).toBe(true);
    expect(compileShape("/models/{model}:generateContent").rules.jsonArray).toBe(false);
    expect(compileShape("/model/{model}/invoke-with-response-stream").rules.base64Payloads).toBe(true);
    const invoke = compileShape("/model/{model}/invoke").rules;
    expect(String.UTF8.decode(invoke.promptHeader!)).toBe("x-amzn-bedrock-input-token-count");
    expect(String.UTF8.decode(invoke.completionHeader!)).toBe("x-amzn-bedrock-output-token-count");
    expect(compileShape("/model/{model}/converse").rules.promptHeader).toBeNull();
    expect(compileShape("/v1/embeddings").rules.totalIsPrompt).toBe(true);
    expect(compileShape("/v1/embeddings").native).toBe(false);
    expect(compileShape("/api/embed").native).toBe(true);
    expect(compileShape("/v2/embed").native).toBe(true);
    expect(compileShape("/v2/chat").native).toBe(true);
    expect(compileShape("/v1/messages").native).toBe(false);
    expect(compileShape("/responses").rules.countOnce).toBe(true);
    expect(compileShape("GET /responses/*").rules.countOnce).toBe(true);
    expect(compileShape("/chat/completions").rules.countOnce).toBe(false);
  });
});
