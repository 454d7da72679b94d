// SPDX-License-Identifier: Apache-2.0
// The dashboard and the rules against a real Prometheus (Debian's `prometheus` package, which
// brings `promtool`): promtool checks and unit-tests the rules; a Prometheus server on loopback
// scrapes the test host's /stats/prometheus over HTTP while the plugin serves a scenario (the
// seed, every provider of tests/fixtures/providers.ts, streamed, failed, aborted and
// cardinality-overflow calls) in two rounds, so that counters grow between scrapes; then every
// expression of the dashboard, of the rules and of the READMEs' PromQL blocks is evaluated through
// Prometheus' HTTP API. `promtool check metrics` lints the rendered text. Each test is skipped,
// with the reason, where the tools are not installed; .ci/run installs them.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { ProxyWasmHost, type HttpStream } from "./host/host.ts";
import { BudgetStack, REDIS_SKIP } from "./budget-stack.ts";
import { drive } from "./host/driver.ts";
import {
  loadStatsTags,
  loadHistogramBuckets,
  renderPrometheus,
  HISTOGRAM_BUCKETS,
} from "./host/telemetry.ts";
import { CASES, API_CASES } from "./fixtures/providers.ts";
import {
  RELEASE_WASM,
  ROOT,
  BOOTSTRAP_CONFIGMAP,
  NODE_METADATA,
  CALLS,
  PATH,
  PLUGIN_CONFIG,
  SEED_HOST,
  seedCall,
} from "./seed.ts";

const RULES = ROOT + "deploy/prometheus/asm-llm-proxy-rules.yaml";
const RULE_TESTS = ROOT + "deploy/prometheus/asm-llm-proxy-rules.test.yaml";
const DASHBOARD = ROOT + "deploy/grafana/asm-llm-proxy-dashboard.json";
const READMES = ["README.md", "deploy/istio/README.md"];
/** The cost and the GenAI histogram on, as deploy/istio/prices-dashscope.yaml patches the WasmPlugin. */
const COST_CONFIG: Record<string, unknown> = Object.fromEntries(
  (parseYaml(readFileSync(ROOT + "deploy/istio/prices-dashscope.yaml", "utf8")) as any[]).map((op) => [
    op.path.replace("/spec/pluginConfig/", ""),
    op.value,
  ]),
);
const BUCKETS = loadHistogramBuckets(BOOTSTRAP_CONFIGMAP);

const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const missing = (cmds: string[]) => {
  const absent = cmds.filter((c) => !has(c));
  return absent.length === 0
    ? false
    : `${absent.join(" and ")} not installed (Debian: apt-get install prometheus); .ci/run installs it`;
};

/** The PrometheusRule's `spec`: a plain Prometheus rule file. */
function ruleGroups(): string {
  return stringifyYaml(parseYaml(readFileSync(RULES, "utf8")).spec);
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "asm-llm-proxy-prom-"));
}

test(
  "promtool check rules: the PrometheusRule's groups are valid rule files",
  { skip: missing(["promtool"]) },
  () => {
    const dir = tempDir();
    try {
      writeFileSync(join(dir, "rules.yaml"), ruleGroups());
      const r = spawnSync("promtool", ["check", "rules", join(dir, "rules.yaml")], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const rules = parseYaml(ruleGroups()).groups.flatMap((g: any) => g.rules);
      assert.match(r.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
      // promtool itself refuses a broken expression.
      writeFileSync(
        join(dir, "broken.yaml"),
        ruleGroups().replace("rate(asm_llm_proxy_prompt_tokens[5m])", "rate(asm_llm_proxy_prompt_tokens)"),
      );
      assert.notEqual(spawnSync("promtool", ["check", "rules", join(dir, "broken.yaml")]).status, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  "promtool test rules: every alert fires where it should, after its `for`, and only there",
  { skip: missing(["promtool"]) },
  () => {
    const tests = parseYaml(readFileSync(RULE_TESTS, "utf8"));
    const alerts = parseYaml(ruleGroups())
      .groups.flatMap((g: any) => g.rules)
      .filter((r: any) => r.alert)
      .map((r: any) => r.alert as string);
    const cases = tests.tests.flatMap((t: any) => t.alert_rule_test ?? []);
    for (const alert of alerts) {
      const mine = cases.filter((c: any) => c.alertname === alert);
      assert.ok(
        mine.some((c: any) => c.exp_alerts.length > 0),
        `${alert}: a case where it fires`,
      );
      assert.ok(
        mine.some((c: any) => c.exp_alerts.length === 0),
        `${alert}: a case where it is silent`,
      );
    }
    const dir = tempDir();
    try {
      writeFileSync(join(dir, tests.rule_files[0]), ruleGroups());
      copyFileSync(RULE_TESTS, join(dir, "rules.test.yaml"));
      const run = () =>
        spawnSync("promtool", ["test", "rules", "rules.test.yaml"], { cwd: dir, encoding: "utf8" });
      const r = run();
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /SUCCESS/);
      // The unit tests fail on the expression this file replaced (one selector over both counter
      // names: the series collide once rate() drops the name).
      const old = `sum by (llmproxy_source_workload_namespace, llmproxy_source_workload) (rate({__name__=~"asm_llm_proxy_prompt_tokens|asm_llm_proxy_completion_tokens"}[5m]))`;
      const groups = parseYaml(ruleGroups());
      groups.groups[0].rules.find((x: any) => x.record === "workload:asm_llm_proxy_tokens:rate5m").expr = old;
      writeFileSync(join(dir, tests.rule_files[0]), stringifyYaml(groups));
      const broken = run();
      assert.notEqual(broken.status, 0);
      assert.match(broken.stdout + broken.stderr, /same labelset/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

// ---- the scenario ----------------------------------------------------------------------------

interface Call {
  path: string;
  authority: string;
  request: string;
  status?: number;
  contentType?: string;
  encoding?: string;
  responseHeaders?: Record<string, string>;
  body: string | Uint8Array;
  /** The response is reset halfway through its body. */
  abort?: boolean;
  method?: string;
}

/**
 * What Istio's stats filter would count for the calls: istio_requests_total and
 * istio_request_duration_milliseconds with the `model` dimension of deploy/istio/telemetry.yaml.
 * SYNTHESIZED by this test, not by Istio (the host runs the plugin alone): for each call, one
 * request with reporter="source", the response code, and `model` read from the plugin's filter
 * state `wasm.asm.llmproxy.request_model` as the Telemetry's CEL expression reads it ("unknown"
 * when the plugin set none). The labels are those Istio exports for an external ServiceEntry host.
 */
class SynthesizedIstioStats {
  private readonly requests = new Map<string, number>();
  private readonly durations = new Map<string, number[]>();

  record(s: HttpStream, authority: string, status: number, durationMs: number): void {
    const model = s.state("wasm.asm.llmproxy.request_model") ?? "unknown";
    const labels = [
      ["reporter", "source"],
      ["source_workload", NODE_METADATA.WORKLOAD_NAME],
      ["source_workload_namespace", NODE_METADATA.NAMESPACE],
      ["source_principal", "unknown"],
      ["source_app", "sleep"],
      ["source_version", "unknown"],
      ["source_canonical_service", "sleep"],
      ["source_canonical_revision", "latest"],
      ["source_cluster", "Kubernetes"],
      ["destination_workload", "unknown"],
      ["destination_workload_namespace", "unknown"],
      ["destination_principal", "unknown"],
      ["destination_app", "unknown"],
      ["destination_version", "unknown"],
      ["destination_service", authority.split(":")[0]],
      ["destination_service_name", authority.split(":")[0]],
      ["destination_service_namespace", "unknown"],
      ["destination_canonical_service", "unknown"],
      ["destination_canonical_revision", "latest"],
      ["destination_cluster", "unknown"],
      ["request_protocol", "http"],
      ["response_code", String(status)],
      ["grpc_response_status", ""],
      ["response_flags", "-"],
      ["connection_security_policy", "unknown"],
      ["model", model],
    ]
      .map(([k, v]) => `${k}="${v}"`)
      .join(",");
    this.requests.set(labels, (this.requests.get(labels) ?? 0) + 1);
    const d = this.durations.get(labels) ?? [];
    d.push(durationMs);
    this.durations.set(labels, d);
  }

  render(): string {
    let out = "# TYPE istio_requests_total counter\n";
    for (const [l, v] of this.requests) out += `istio_requests_total{${l}} ${v}\n`;
    out += "# TYPE istio_request_duration_milliseconds histogram\n";
    for (const [l, d] of this.durations) {
      for (const b of HISTOGRAM_BUCKETS)
        out += `istio_request_duration_milliseconds_bucket{${l},le="${b}"} ${d.filter((x) => x <= b).length}\n`;
      out += `istio_request_duration_milliseconds_bucket{${l},le="+Inf"} ${d.length}\n`;
      out += `istio_request_duration_milliseconds_sum{${l}} ${d.reduce((a, b) => a + b, 0)}\n`;
      out += `istio_request_duration_milliseconds_count{${l}} ${d.length}\n`;
    }
    return out;
  }
}

const chat = (model: string, stream = false) =>
  JSON.stringify({ model, stream, messages: [{ role: "user", content: "Please introduce yourself." }] });

function completion(model: string, prompt: number, completionTokens: number): string {
  return JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion",
    model,
    choices: [{ index: 0, message: { role: "assistant", content: "Hello." }, finish_reason: "stop" }],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completionTokens,
      total_tokens: prompt + completionTokens,
    },
  });
}

// The seed's provider, called on its API path (the seed's own calls go to `/` and are routed).
const DASHSCOPE = { path: PATH, authority: "dashscope.aliyuncs.com" };

class Scenario {
  readonly istio = new SynthesizedIstioStats();
  private flood = 0;

  constructor(readonly host: ProxyWasmHost) {}

  call(c: Call): HttpStream {
    const status = c.status ?? 200;
    const body = typeof c.body === "string" ? new TextEncoder().encode(c.body) : c.body;
    const s = drive(this.host, {
      cluster: `outbound|443||${c.authority}`,
      request: {
        headers: {
          ":method": c.method ?? "POST",
          ":path": c.path,
          ":authority": c.authority,
          "content-type": "application/json",
        },
        body: c.request,
      },
      wait: 180,
      response: {
        status,
        headers: {
          "content-type": c.contentType ?? "application/json",
          ...(c.encoding ? { "content-encoding": c.encoding } : {}),
          ...c.responseHeaders,
        },
        ...(c.abort
          ? { body: body.subarray(0, body.length >> 1), end: "reset" as const }
          : { body, cuts: [body.length >> 2, body.length >> 1] }),
      },
      linger: 420,
    });
    this.istio.record(s, c.authority, c.abort ? 0 : status, 600);
    return s;
  }

  /** One round of traffic; every series the first round creates grows in the second. */
  round(): void {
    for (const call of CALLS) {
      const s = seedCall(this.host, call);
      this.istio.record(s, "dashscope.aliyuncs.com", 200, 1);
    }
    // A keyed seed call that the router sent, after the plugin's header changes, to another
    // cluster (LLMProxyKeyMisrouted).
    seedCall(this.host, CALLS[0], [], "outbound|80||llm-cache.default.svc.cluster.local");
    for (const c of CASES) this.call(c);
    // Every other API in its own wire format (Gemini, Bedrock, Cohere, Ollama, Responses by id).
    for (const c of API_CASES) this.call(c);
    const turbo = { ...DASHSCOPE, request: chat("qwen-turbo") };
    // Failed: an error status, a body that is not JSON, a compressed body.
    this.call({ ...turbo, status: 500, body: '{"error":{"message":"overloaded"}}' });
    // Three of each, so that unreadable usage stays above LLMUsageNotRecorded's 5 % of all calls.
    for (let i = 0; i < 3; i++) {
      this.call({ ...turbo, body: '{"model":"qwen-turbo","usage":{"prompt_tokens":5,' });
      this.call({ ...turbo, encoding: "gzip", body: "\x1f\x8b\x08\x00binary" });
    }
    // Aborted: a stream reset halfway.
    const stream = CASES.find((c) => c.contentType.startsWith("text/event-stream"))!;
    this.call({ ...stream, abort: true });
    // Not an LLM call: Istio counts it with model="unknown", the plugin not at all.
    this.call({ ...DASHSCOPE, method: "GET", path: "/v1/models", request: "", body: '{"data":[]}' });
    // Past max_series: new models fold into "other" and count as cardinality_overflow.
    const overflow = () => this.host.counter("asm_llm_proxy_issues|llmproxy_issue=cardinality_overflow") ?? 0;
    const before = overflow();
    for (let tries = 0; overflow() < before + 2; tries++) {
      assert.ok(tries < 1000, "new models never passed max_series");
      const model = `flood-${this.flood++}`;
      this.call({ ...DASHSCOPE, request: chat(model), body: completion(model, 4, 8) });
    }
  }

  /** A heavy client: 2.4 million tokens in one round crosses LLMTokenRateHigh's 2,000/s. */
  heavy(): void {
    this.call({
      ...DASHSCOPE,
      request: chat("qwen-turbo"),
      body: completion("qwen-turbo", 1_200_000, 1_200_000),
    });
  }
}

/**
 * Token budget traffic (the plugin's `rate_limit` on the service and Redis of BudgetStack): each
 * round, calls on a 40-token key that is not refilled (two allowed, then denied) and one while
 * the service is down (failed open), so that every outcome series grows between scrapes.
 */
class BudgetTraffic {
  private constructor(
    readonly stack: BudgetStack,
    readonly host: ProxyWasmHost,
  ) {}

  static async start(): Promise<BudgetTraffic> {
    const stack = await BudgetStack.start();
    return new BudgetTraffic(stack, await stack.plugin(RELEASE_WASM));
  }

  async round(): Promise<void> {
    for (let i = 0; i < 4; i++) await this.stack.call(this.host, { "x-team": "spent-prometheus" });
    const port = this.stack.service.port;
    await this.stack.service.stop();
    await this.stack.call(this.host, { "x-team": "spent-prometheus" });
    this.stack.service = await this.stack.startService(String(port));
  }

  async stop(): Promise<void> {
    this.host.close();
    await this.stack.stop();
  }
}

// ---- Prometheus -------------------------------------------------------------------------------

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

interface ApiResult {
  status: string;
  error?: string;
  warnings?: string[];
  data: any;
}

/** Grafana's variables, as the dashboard's "All" (allValue) and the ranges Grafana computes. */
function grafana(expr: string, vars: Record<string, string>): string {
  return expr
    .replace(/\$__rate_interval/g, "1m")
    .replace(/\$__range/g, "1h")
    .replace(/\$(\w+)/g, (m, name) => vars[name] ?? m);
}

interface Expression {
  where: string;
  expr: string;
}

function dashboardExpressions(): Expression[] {
  const d = JSON.parse(readFileSync(DASHBOARD, "utf8"));
  return d.panels.flatMap((p: any) =>
    (p.targets ?? []).map((t: any) => ({ where: `panel "${p.title}"`, expr: t.expr })),
  );
}

function readmeExpressions(): Expression[] {
  return READMES.flatMap((f) =>
    [...readFileSync(ROOT + f, "utf8").matchAll(/```promql\n([\s\S]*?)```/g)].flatMap((m) =>
      m[1]
        .split("\n")
        .filter((l) => l.trim() !== "" && !l.trim().startsWith("#"))
        .map((expr) => ({ where: f, expr })),
    ),
  );
}

test(
  "a real Prometheus scrapes the plugin's metrics; every dashboard, rule and README expression returns data",
  { skip: missing(["prometheus"]), timeout: 120_000 },
  async (t) => {
    const dir = tempDir();
    let prometheus: ChildProcess | undefined;
    let server: Server | undefined;
    let budgets: BudgetTraffic | null = null;
    try {
      // One sidecar: the seed's workload, a small series cap, and one misspelt key (a problem the
      // plugin logs and counts, and runs through with the defaults).
      const host = await ProxyWasmHost.load(RELEASE_WASM, {
        ...SEED_HOST,
        pluginConfig: { ...PLUGIN_CONFIG, ...COST_CONFIG, max_series: 30, strip_accept_encodng: true },
      });
      const scenario = new Scenario(host);
      const tags = loadStatsTags(BOOTSTRAP_CONFIGMAP);
      // A second sidecar of the same workload with token budgets (the plugin's rate_limit) on
      // the real service and Redis, scraped as its own target; without redis-server its
      // queries are left out, saying so.
      budgets = REDIS_SKIP ? null : await BudgetTraffic.start();
      if (budgets === null) t.diagnostic(`token budget queries left out: ${REDIS_SKIP}`);
      let scrapes = 0;
      server = createServer((req, res) => {
        if (req.url === "/budget/stats/prometheus" && budgets !== null) {
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
          res.end(renderPrometheus(budgets.host, tags));
          return;
        }
        if (req.url !== "/stats/prometheus") {
          res.writeHead(404).end();
          return;
        }
        scrapes++;
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
        res.end(renderPrometheus(host, tags, BUCKETS) + scenario.istio.render());
      });
      await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
      const target = `127.0.0.1:${(server.address() as AddressInfo).port}`;

      writeFileSync(join(dir, "rules.yaml"), ruleGroups());
      writeFileSync(
        join(dir, "prometheus.yml"),
        stringifyYaml({
          global: { scrape_interval: "250ms", scrape_timeout: "250ms", evaluation_interval: "250ms" },
          rule_files: ["rules.yaml"],
          scrape_configs: [
            {
              job_name: "sidecars",
              metrics_path: "/stats/prometheus",
              // The labels Kubernetes service discovery gives a sidecar target (Istio's
              // Prometheus integration and kube-prometheus-stack's PodMonitors), which the
              // per-pod alerts group by.
              static_configs: [{ targets: [target], labels: { namespace: "default", pod: "sleep-7d4b9" } }],
            },
            {
              job_name: "budget-sidecars",
              metrics_path: "/budget/stats/prometheus",
              static_configs: [{ targets: [target], labels: { namespace: "default", pod: "sleep-5c6f1" } }],
            },
          ],
        }),
      );
      const port = await freePort();
      const api = `http://127.0.0.1:${port}/api/v1/`;
      let stderr = "";
      prometheus = spawn(
        "prometheus",
        [
          `--config.file=${join(dir, "prometheus.yml")}`,
          `--storage.tsdb.path=${join(dir, "data")}`,
          `--web.listen-address=127.0.0.1:${port}`,
          "--log.level=warn",
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      prometheus.stderr!.on("data", (b) => (stderr += b));
      const query = async (q: string): Promise<ApiResult> => {
        const r = await fetch(api + "query?query=" + encodeURIComponent(q));
        return (await r.json()) as ApiResult;
      };
      const vector = async (
        q: string,
      ): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> => {
        const r = await query(q);
        assert.equal(r.status, "success", `${q}: ${r.error}`);
        return r.data.result;
      };
      await until("Prometheus to be ready", async () =>
        (await fetch(`http://127.0.0.1:${port}/-/ready`)).ok ? true : undefined,
      );
      const scraped = async (n: number) => {
        const from = scrapes;
        await until(`${n} scrapes`, async () => (scrapes >= from + n ? true : undefined));
        await sleep(300); // the last scrape's samples committed
      };

      // Round 1, scraped; round 2 and the heavy client, scraped again.
      scenario.round();
      await budgets?.round();
      await scraped(2);
      const seedSeries =
        'asm_llm_proxy_prompt_tokens{llmproxy_model="qwen-turbo", llmproxy_destination_service="dashscope.aliyuncs.com"}';
      const [first] = await vector(seedSeries);
      assert.ok(first, "Prometheus scraped the seed's counter");
      scenario.round();
      scenario.heavy();
      await budgets?.round();
      await scraped(3);

      // Counters grew between scrapes, and Prometheus holds what the sidecar renders.
      const [second] = await vector(seedSeries);
      assert.ok(
        Number(second.value[1]) > Number(first.value[1]),
        `${first.value[1]} then ${second.value[1]}`,
      );
      assert.equal(
        Number(second.value[1]),
        host.counter(
          "asm_llm_proxy_prompt_tokens|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=dashscope.aliyuncs.com|llmproxy_model=qwen-turbo",
        ),
      );
      for (const grown of [
        "asm_llm_proxy_requests",
        "asm_llm_proxy_completion_tokens",
        "asm_llm_proxy_issues",
        "asm_llm_proxy_duration_ms_count",
        "istio_requests_total",
      ]) {
        assert.ok((await vector(`increase(${grown}[1m]) > 0`)).length > 0, `${grown} grew between scrapes`);
      }

      // The GenAI histogram: the conventions' buckets and labels, as Prometheus stores them.
      const seedInput =
        'gen_ai_client_token_usage_bucket{gen_ai_provider_name="dashscope", gen_ai_request_model="qwen-turbo", gen_ai_token_type="input"}';
      const buckets = await vector(`sum by (le) (${seedInput})`);
      assert.deepEqual(
        buckets
          .map((b) => b.metric.le)
          .sort(
            (a, b) => parseFloat(a.replace("+Inf", "Infinity")) - parseFloat(b.replace("+Inf", "Infinity")),
          ),
        [...BUCKETS[0].buckets.map(String), "+Inf"],
      );
      assert.deepEqual(
        BUCKETS[0].buckets,
        [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864],
      );
      const [{ metric }] = await vector(seedInput.replace("}", ', le="+Inf"}'));
      assert.deepEqual(Object.keys(metric).sort(), [
        "__name__",
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "gen_ai_response_model",
        "gen_ai_token_type",
        "instance",
        "job",
        "le",
        "namespace",
        "pod",
        "server_address",
      ]);
      assert.equal(metric.gen_ai_operation_name, "chat");
      assert.equal(metric.server_address, "dashscope.aliyuncs.com");
      // The heavy client's 1.2 million input tokens are counted at le=4194304, not at 1048576.
      const at = (le: string) => Number(buckets.find((b) => b.metric.le === le)!.value[1]);
      assert.ok(at("4194304") - at("1048576") >= 1, "the heavy call is in (1048576, 4194304]");
      // Cost: micro-units of USD for the priced qwen-turbo, and the unpriced calls of other models.
      const [cost] = await vector(
        'sum by (llmproxy_currency) (asm_llm_proxy_cost{llmproxy_model="qwen-turbo"})',
      );
      assert.equal(cost.metric.llmproxy_currency, "USD");
      assert.ok(Number(cost.value[1]) > 0);
      assert.ok((await vector('asm_llm_proxy_cost_unpriced{llmproxy_model="qwen1.5-72b-chat"}')).length > 0);

      // Every expression: no error, and data (a number) for the series this scenario produced.
      const groups = parseYaml(ruleGroups()).groups;
      const rules = groups.flatMap((g: any) => g.rules);
      const budgeted = (e: { expr: string }) =>
        budgets !== null || !e.expr.includes("asm_llm_proxy_ratelimit");
      const exprs: Expression[] = [
        ...dashboardExpressions()
          .filter(budgeted)
          .flatMap((e) => [
            { where: e.where + " (All)", expr: grafana(e.expr, { namespace: ".*", workload: ".*" }) },
            {
              where: e.where + " (default/sleep)",
              expr: grafana(e.expr, { namespace: "default", workload: "sleep" }),
            },
          ]),
        ...rules.filter(budgeted).map((r: any) => ({ where: `rule ${r.record ?? r.alert}`, expr: r.expr })),
        ...readmeExpressions(),
      ];
      assert.ok(exprs.length >= 40, `${exprs.length} expressions`);
      const quoted = readmeExpressions();
      assert.deepEqual(
        [...new Set(quoted.map((e) => e.where))].sort(),
        [...READMES].sort(),
        `PromQL blocks in each README: ${quoted.length} lines`,
      );
      const failures: string[] = [];
      for (const { where, expr } of exprs) {
        const r = await query(expr);
        if (r.status !== "success") failures.push(`${where}: ${r.error} <- ${expr}`);
        // A series idle over the window is NaN in a ratio or a quantile (0/0), as on any
        // Prometheus; data means at least one number.
        else if (!r.data.result.some((s: any) => Number.isFinite(Number(s.value[1]))))
          failures.push(`${where}: no data <- ${expr}`);
      }
      assert.deepEqual(failures, []);
      // The dashboard's variables, the way Grafana runs label_values().
      const d = JSON.parse(readFileSync(DASHBOARD, "utf8"));
      for (const v of d.templating.list.filter((x: any) => x.type === "query")) {
        const [, selector, label] = /^label_values\((.*),\s*(\w+)\)$/.exec(v.query.query)!;
        const r = await fetch(
          `${api}label/${label}/values?match[]=${encodeURIComponent(grafana(selector, { namespace: ".*" }))}`,
        );
        const body = (await r.json()) as ApiResult;
        assert.deepEqual(
          body.data,
          [label.endsWith("namespace") ? "default" : "sleep"],
          `variable ${v.name}`,
        );
      }
      // Prometheus' own rule evaluation: every recording rule recorded, every alert pending (or firing).
      for (const r of rules.filter((x: any) => x.record)) {
        await until(`recorded ${r.record}`, async () =>
          (await vector(r.record)).length > 0 ? true : undefined,
        );
      }
      // An alert without `for` (LLMProxyKeyMisrouted) fires at once, with no pending state.
      for (const r of rules.filter((x: any) => x.alert && budgeted(x))) {
        const state = r.for === undefined ? "firing" : "pending";
        await until(`alert ${r.alert} ${state}`, async () =>
          (await vector(`ALERTS{alertname="${r.alert}", alertstate="${state}"}`)).length > 0
            ? true
            : undefined,
        );
      }
      // The heavy client's rate, as Prometheus computes it, crossed the alert's threshold; the
      // check itself fails on an expression Prometheus refuses.
      const [rate] = await vector("workload:asm_llm_proxy_tokens:rate5m");
      assert.ok(Number(rate.value[1]) > 2000, rate.value[1]);
      const collide = await query(
        'sum(rate({__name__=~"asm_llm_proxy_prompt_tokens|asm_llm_proxy_completion_tokens"}[5m]))',
      );
      assert.equal(collide.status, "error");
      assert.match(String(collide.error), /same labelset/);
      assert.equal(stderr.includes("level=error"), false, stderr);
    } finally {
      await budgets?.stop();
      prometheus?.kill();
      if (prometheus && prometheus.exitCode === null) await new Promise((r) => prometheus!.once("exit", r));
      await new Promise((r) => (server ? server.close(r) : r(undefined)));
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

/** What `promtool check metrics` says of Envoy's rendering, each kept on purpose (README "Metrics"). */
const KEPT_FINDINGS: Array<[string, (name: string, type: string) => boolean]> = [
  // The seed's counter names: Envoy renders counters under the name the plugin gives them.
  ['counter metrics should have "_total" suffix', (_n, type) => type === "counter"],
  // Envoy's /stats/prometheus prints no HELP line for any stat.
  ["no help text", () => true],
  // Milliseconds, as Istio's istio_request_duration_milliseconds and Envoy's histograms use.
  ["metric names should not contain abbreviated units", (name) => name.endsWith("_ms")],
];

test(
  "promtool check metrics: the rendered text has the findings the README explains, no others",
  { skip: missing(["promtool"]) },
  async () => {
    const host = await ProxyWasmHost.load(RELEASE_WASM, {
      ...SEED_HOST,
      pluginConfig: { ...PLUGIN_CONFIG, ...COST_CONFIG, max_series: 30 },
    });
    new Scenario(host).round();
    const text = renderPrometheus(host, loadStatsTags(BOOTSTRAP_CONFIGMAP), BUCKETS);
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    assert.ok(types.size >= 9, `${types.size} families`);
    const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    const findings = (r.stdout + r.stderr)
      .split("\n")
      .filter(Boolean)
      .map((l) => /^(\S+) (.*)$/.exec(l.trim())!);
    const expected = [...types].flatMap(([name, type]) =>
      KEPT_FINDINGS.filter(([, applies]) => applies(name, type)).map(([finding]) => `${name} ${finding}`),
    );
    assert.deepEqual(findings.map((m) => `${m[1]} ${m[2]}`).sort(), expected.sort());
    // Each kind of finding is explained in the README, in promtool's words.
    const readme = readFileSync(ROOT + "README.md", "utf8");
    for (const [finding] of KEPT_FINDINGS)
      assert.ok(readme.includes(finding), `README explains "${finding}"`);
    // promtool itself finds something in a text that breaks the conventions differently.
    const other = spawnSync("promtool", ["check", "metrics"], {
      input: "# HELP x_total a\n# TYPE x_total gauge\nx_total 1\n",
      encoding: "utf8",
    });
    assert.match(other.stdout + other.stderr, /x_total/);
  },
);
