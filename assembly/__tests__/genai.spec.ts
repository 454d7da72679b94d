// SPDX-License-Identifier: Apache-2.0
// OpenTelemetry GenAI names of a call (operation, provider) and its input/output totals.

import { operationName, providerName, tokenAccounting, inputTokens, outputTokens } from "../telemetry/genai";
import { INPUT_EXCLUDES_CACHE, OUTPUT_EXCLUDES_REASONING } from "../telemetry/cost";
import { genAiTokenUsageName } from "../telemetry/names";

describe("operationName", () => {
  it("names each API's operation with the conventions' values", () => {
    expect(operationName("/compatible-mode/v1/chat/completions")).toBe("chat");
    expect(operationName("/v1/completions")).toBe("text_completion");
    expect(operationName("/v1/embeddings")).toBe("embeddings");
    expect(operationName("/v2/embed")).toBe("embeddings");
    expect(operationName("/api/embed")).toBe("embeddings");
    expect(operationName("/v1/responses")).toBe("chat");
    expect(operationName("/v1/messages")).toBe("chat");
    expect(operationName("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse")).toBe(
      "generate_content",
    );
    expect(operationName("/model/anthropic.claude-3-haiku/converse")).toBe("chat");
    expect(operationName("/api/generate")).toBe("text_completion");
    expect(operationName("/api/chat")).toBe("chat");
  });
});

describe("providerName", () => {
  it("names the provider by host first", () => {
    expect(providerName("dashscope.aliyuncs.com", "/compatible-mode/v1/chat/completions")).toBe("dashscope");
    expect(providerName("api.openai.com", "/v1/chat/completions")).toBe("openai");
    expect(providerName("myres.openai.azure.com", "/openai/deployments/x/chat/completions")).toBe(
      "azure.ai.openai",
    );
    expect(providerName("api.deepseek.com", "/chat/completions")).toBe("deepseek");
    expect(providerName("api.moonshot.cn", "/v1/chat/completions")).toBe("moonshot_ai");
    expect(providerName("bedrock-runtime.us-east-1.amazonaws.com", "/model/x/converse")).toBe("aws.bedrock");
    expect(providerName("us-central1-aiplatform.googleapis.com", "/x:generateContent")).toBe("gcp.vertex_ai");
    expect(providerName("generativelanguage.googleapis.com", "/v1beta/models/g:generateContent")).toBe(
      "gcp.gemini",
    );
  });
  it("falls back to the API's family, then openai", () => {
    expect(providerName("gateway.internal", "/v1/messages")).toBe("anthropic");
    expect(
      providerName("gateway.internal", "/v1/projects/p/publishers/google/models/g:generateContent"),
    ).toBe("gcp.vertex_ai");
    expect(providerName("gateway.internal", "/v1beta/models/g:generateContent")).toBe("gcp.gemini");
    expect(providerName("gateway.internal", "/model/m/invoke")).toBe("aws.bedrock");
    expect(providerName("gateway.internal", "/v2/chat")).toBe("cohere");
    expect(providerName("ollama.local", "/api/chat")).toBe("ollama");
    expect(providerName("vllm.local", "/v1/chat/completions")).toBe("openai");
    // A look-alike host is not the provider.
    expect(providerName("api.openai.com.evil.example", "/v1/messages")).toBe("anthropic");
  });
});

describe("token totals", () => {
  it("knows which APIs report cache and reasoning beside their totals", () => {
    expect(tokenAccounting("/v1/messages")).toBe(INPUT_EXCLUDES_CACHE);
    expect(tokenAccounting("/model/m/converse-stream")).toBe(INPUT_EXCLUDES_CACHE);
    expect(tokenAccounting("/v1beta/models/g:generateContent")).toBe(OUTPUT_EXCLUDES_REASONING);
    expect(tokenAccounting("/compatible-mode/v1/chat/completions")).toBe(0);
    expect(tokenAccounting("/v1/responses")).toBe(0);
  });
  it("gives the conventions' input and output, every part included", () => {
    expect(inputTokens(600, 400, 200, INPUT_EXCLUDES_CACHE)).toBe(1200);
    expect(inputTokens(1000, 400, -1, 0)).toBe(1000);
    expect(inputTokens(-1, 400, -1, INPUT_EXCLUDES_CACHE)).toBe(-1);
    expect(outputTokens(100, 50, OUTPUT_EXCLUDES_REASONING)).toBe(150);
    expect(outputTokens(500, 100, 0)).toBe(500);
    expect(outputTokens(-1, 100, 0)).toBe(-1);
  });
});

describe("genAiTokenUsageName", () => {
  it("carries the labels as |key=value parts", () => {
    expect(
      genAiTokenUsageName("input", "chat", "dashscope", "qwen-turbo", "qwen-turbo", "dashscope.aliyuncs.com"),
    ).toBe(
      "gen_ai_client_token_usage|gen_ai_token_type=input|gen_ai_operation_name=chat|gen_ai_provider_name=dashscope|gen_ai_request_model=qwen-turbo|gen_ai_response_model=qwen-turbo|server_address=dashscope.aliyuncs.com",
    );
  });
});
