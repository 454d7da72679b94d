// SPDX-License-Identifier: Apache-2.0
// Token budgets in the sidecar (the `rate_limit` option, ASM's contract): the check of an LLM
// call's keys before it goes upstream, its answer, and the report of its tokens once it is done.
// The request waits only for the check, which ends on the answer or on Envoy's timeout of the
// call (the plugin's only pause). Both calls are made as the root context (Envoy's rule for
// http calls), so a report outlives the stream it is for.

import {
  BudgetConfig,
  KeySource,
  CheckAnswer,
  checkPath,
  updateBody,
  denialBody,
  UPDATE_PATH,
  ANSWER_ALLOW,
  ANSWER_DENY,
  ANSWER_FAILED,
  PART_HEADER,
  PART_SOURCE_WORKLOAD,
  PART_SOURCE_NAMESPACE,
  PART_ROUTE,
  PART_DESTINATION,
  PART_MODEL,
} from "../llm/budget";
import {
  UNKNOWN,
  KEY_RATELIMIT,
  RATELIMIT_OUTCOMES,
  RATELIMIT_ALLOWED,
  RATELIMIT_DENIED,
  RATELIMIT_FAILED_OPEN,
  RATELIMIT_FAILED_CLOSED,
} from "../telemetry/names";
import {
  httpCall,
  setEffectiveContext,
  continueRequest,
  sendLocalResponse,
  getHeader,
  getProperty,
  setProperty,
  readBuffer,
  bufferLength,
  release,
  log,
  logEnabled,
  LogLevel,
  HeaderMapType,
  BufferType,
} from "../host/host";
import { Root, CallRecord } from "./root";

const H_STATUS = String.UTF8.encode(":status");
const P_XDS_ROUTE_NAME = String.UTF8.encode("xds\0route_name");
const P_ROUTE_NAME = String.UTF8.encode("route_name");
const P_RATELIMIT = String.UTF8.encode(KEY_RATELIMIT);

/** What the call's destination is, asked only when a key or the metric needs it. */
export abstract class Destination {
  abstract destination(): string;
}

/**
 * One call's check: its keys, the dimensions its outcome is counted with, and the outcome
 * (-1 while the answer is out). The stream keeps it for the report at the end.
 */
export class Check {
  outcome: i32 = -1;
  constructor(
    public contextId: u32,
    public budget: BudgetConfig,
    public keys: string[],
    public root: Root,
    public record: CallRecord,
  ) {}

  /** The call was answered here (denied, or the check failed closed): it went nowhere. */
  get refused(): bool {
    return this.outcome == RATELIMIT_DENIED || this.outcome == RATELIMIT_FAILED_CLOSED;
  }
}

/** The outcome, published: filter state `ratelimit` and asm_llm_proxy_ratelimit. */
function decided(c: Check, outcome: i32): void {
  c.outcome = outcome;
  setProperty(P_RATELIMIT, RATELIMIT_OUTCOMES[outcome]);
  c.root.recordBudget(c.record, outcome);
}

/**
 * The values of a call's key fields, read in its request-headers callback (headers are readable
 * only then): the loaded request headers, the workload identity, the route name (read only when
 * a template names it), the destination and the model the path names.
 */
export class CallKeys extends KeySource {
  constructor(
    public workload: string,
    public namespace: string,
    public call: Destination,
    public model: string | null,
  ) {
    super();
  }

  value(kind: u8, header: ArrayBuffer): string | null {
    if (kind == PART_HEADER) return getHeader(HeaderMapType.RequestHeaders, header);
    if (kind == PART_SOURCE_WORKLOAD) return this.workload == UNKNOWN ? null : this.workload;
    if (kind == PART_SOURCE_NAMESPACE) return this.namespace == UNKNOWN ? null : this.namespace;
    if (kind == PART_DESTINATION) return this.call.destination();
    if (kind == PART_MODEL) return this.model;
    if (kind == PART_ROUTE) {
      const name = getProperty(P_XDS_ROUTE_NAME);
      return name !== null ? name : getProperty(P_ROUTE_NAME);
    }
    return null;
  }
}

/**
 * The check of an LLM call, made in its request-headers callback (the headers loaded), or null
 * when there is no budget (`rate_limit` unset) or none of its keys has a value: such a call is
 * not checked.
 */
export function newCheck(
  budget: BudgetConfig | null,
  root: Root,
  contextId: u32,
  call: Destination,
  model: string | null,
  headers: string[],
): Check | null {
  if (budget === null) return null;
  const keys = budget.keys(new CallKeys(root.workload, root.namespace, call, model));
  if (keys.length == 0) return null;
  const r = new CallRecord();
  r.destination = call.destination();
  r.model = model !== null ? model : UNKNOWN;
  r.headers = headers;
  return new Check(contextId, budget, keys, root, r);
}

/** Checks waiting for their answer, by call token; reports in flight. */
const pending = new Map<u32, Check>();
const reports = new Set<u32>();
const answer = new CheckAnswer();

/**
 * Starts the check of a call's keys. True when the request must wait (the headers callback then
 * returns StopIteration): for the answer, or because it was already refused.
 */
export function startCheck(c: Check): bool {
  const budget = c.budget;
  const token = httpCall(
    budget.clusterBytes,
    [":method", "GET", ":path", checkPath(c.keys), ":authority", budget.authority],
    "",
    budget.timeoutMs,
  );
  if (token != 0) {
    pending.set(token, c);
    return true;
  }
  // Envoy refused the call (a cluster it does not know): the service failed.
  if (logEnabled(LogLevel.Debug))
    log(LogLevel.Debug, "asm-llm-proxy: the proxy refused the token budget check to " + budget.cluster);
  return decide(c, ANSWER_FAILED, false);
}

/**
 * The verdict's effect: on with the request, or a local reply. `paused`: the request waits and
 * must be continued. Returns whether the request stops here.
 */
function decide(c: Check, verdict: u8, paused: bool): bool {
  const budget = c.budget;
  if (verdict == ANSWER_ALLOW || (verdict == ANSWER_FAILED && budget.failOpen)) {
    decided(c, verdict == ANSWER_ALLOW ? RATELIMIT_ALLOWED : RATELIMIT_FAILED_OPEN);
    if (paused) continueRequest();
    return false;
  }
  const denied = verdict == ANSWER_DENY;
  const headers = ["content-type", "application/json"];
  if (denied && answer.retryAfter >= 0) {
    headers.push("retry-after");
    headers.push(answer.retryAfter.toString());
  }
  // The outcome first: the local reply runs the response callbacks, which read it.
  decided(c, denied ? RATELIMIT_DENIED : RATELIMIT_FAILED_CLOSED);
  sendLocalResponse(
    budget.rejectedCode,
    denied ? "asm_llm_proxy_token_budget_spent" : "asm_llm_proxy_token_budget_unchecked",
    denialBody(denied ? answer.description : "the token budget could not be checked"),
    headers,
  );
  return true;
}

/** proxy_on_http_call_response: a check's answer decides its request; a report's is dropped. */
export function onCallResponse(token: u32, headers: u32, bodySize: u32): void {
  if (reports.has(token)) {
    reports.delete(token);
    return;
  }
  if (!pending.has(token)) return;
  const c = pending.get(token);
  pending.delete(token);
  // The stream may be gone (the client left while the check was out).
  if (!setEffectiveContext(c.contextId)) return;
  let verdict = ANSWER_FAILED;
  // 0 headers: a reset. Envoy answers a timeout with 504 and an unreachable cluster with 503.
  if (headers > 0 && getHeader(HeaderMapType.HttpCallResponseHeaders, H_STATUS) == "200") {
    const ptr = readBuffer(BufferType.HttpCallResponseBody, 0, bodySize);
    if (ptr != 0) {
      verdict = answer.read(ptr, bufferLength);
      release(ptr);
    }
  }
  decide(c, verdict, true);
}

/**
 * Reports a finished call's tokens to the keys it was checked under, fire-and-forget. A call
 * with no token known reports nothing.
 */
export function report(c: Check, prompt: i64, completion: i64, total: i64): void {
  if (c.refused) return;
  const budget = c.budget;
  const keys = c.keys;
  if (total <= 0) total = (prompt > 0 ? prompt : 0) + (completion > 0 ? completion : 0);
  if (total <= 0) return;
  const token = httpCall(
    budget.clusterBytes,
    [
      ":method",
      "POST",
      ":path",
      UPDATE_PATH,
      ":authority",
      budget.authority,
      "content-type",
      "application/json",
    ],
    updateBody(keys, prompt, completion, total),
    budget.timeoutMs,
  );
  if (token != 0) reports.add(token);
}
