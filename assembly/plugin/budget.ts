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
  readBuffer,
  bufferLength,
  release,
  log,
  logEnabled,
  LogLevel,
  HeaderMapType,
  BufferType,
} from "../host/host";

const H_STATUS = String.UTF8.encode(":status");
const P_XDS_ROUTE_NAME = String.UTF8.encode("xds\0route_name");
const P_ROUTE_NAME = String.UTF8.encode("route_name");

/** The stream a check decides for: it learns the outcome (filter state, metric, what to skip). */
export abstract class BudgetOwner {
  abstract get contextId(): u32;
  abstract decided(outcome: i32): void;
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
    public destination: string,
    public model: string | null,
  ) {
    super();
  }

  value(kind: u8, header: ArrayBuffer): string | null {
    if (kind == PART_HEADER) return getHeader(HeaderMapType.RequestHeaders, header);
    if (kind == PART_SOURCE_WORKLOAD) return this.workload == UNKNOWN ? null : this.workload;
    if (kind == PART_SOURCE_NAMESPACE) return this.namespace == UNKNOWN ? null : this.namespace;
    if (kind == PART_DESTINATION) return this.destination;
    if (kind == PART_MODEL) return this.model;
    if (kind == PART_ROUTE) {
      const name = getProperty(P_XDS_ROUTE_NAME);
      return name !== null ? name : getProperty(P_ROUTE_NAME);
    }
    return null;
  }
}

class Pending {
  constructor(
    public owner: BudgetOwner,
    public budget: BudgetConfig,
  ) {}
}

/** Checks waiting for their answer, by call token; reports in flight. */
const pending = new Map<u32, Pending>();
const reports = new Set<u32>();
const answer = new CheckAnswer();

/**
 * Starts the check of a call's keys. True when the request must wait (the headers callback then
 * returns StopIteration): for the answer, or because it was already refused.
 */
export function startCheck(budget: BudgetConfig, owner: BudgetOwner, keys: string[]): bool {
  const token = httpCall(
    budget.clusterBytes,
    [":method", "GET", ":path", checkPath(keys), ":authority", budget.authority],
    "",
    budget.timeoutMs,
  );
  if (token != 0) {
    pending.set(token, new Pending(owner, budget));
    return true;
  }
  // Envoy refused the call (a cluster it does not know): the service failed.
  if (logEnabled(LogLevel.Debug))
    log(LogLevel.Debug, "asm-llm-proxy: the proxy refused the token budget check to " + budget.cluster);
  return decide(owner, budget, ANSWER_FAILED, false);
}

/**
 * The verdict's effect: on with the request, or a local reply. `paused`: the request waits and
 * must be continued. Returns whether the request stops here.
 */
function decide(owner: BudgetOwner, budget: BudgetConfig, verdict: u8, paused: bool): bool {
  if (verdict == ANSWER_ALLOW || (verdict == ANSWER_FAILED && budget.failOpen)) {
    owner.decided(verdict == ANSWER_ALLOW ? RATELIMIT_ALLOWED : RATELIMIT_FAILED_OPEN);
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
  owner.decided(denied ? RATELIMIT_DENIED : RATELIMIT_FAILED_CLOSED);
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
  const p = pending.get(token);
  pending.delete(token);
  // The stream may be gone (the client left while the check was out).
  if (!setEffectiveContext(p.owner.contextId)) return;
  let verdict = ANSWER_FAILED;
  // 0 headers: a reset. Envoy answers a timeout with 504 and an unreachable cluster with 503.
  if (headers > 0 && getHeader(HeaderMapType.HttpCallResponseHeaders, H_STATUS) == "200") {
    const ptr = readBuffer(BufferType.HttpCallResponseBody, 0, bodySize);
    if (ptr != 0) {
      verdict = answer.read(ptr, bufferLength);
      release(ptr);
    }
  }
  decide(p.owner, p.budget, verdict, true);
}

/**
 * Reports a finished call's tokens to the keys it was checked under, fire-and-forget. A call
 * with no token known reports nothing.
 */
export function report(budget: BudgetConfig, keys: string[], prompt: i64, completion: i64, total: i64): void {
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
