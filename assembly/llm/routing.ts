// SPDX-License-Identifier: Apache-2.0
// Provider routing, as ASM's LLMProvider / LLMRoute do it in the sidecar: which configured
// provider a request is for (by host), what the route chosen by Envoy overrides, and whether the
// request's path is replaced. Everything per request here is a lookup in tables built once per VM
// (config/providers.ts builds them). Pure: no host imports.

import { hostFromAuthority } from "./hosts";
import { jsonString } from "./rewrite";

/** How a provider takes its key. */
export const AUTH_BEARER: u8 = 0; // authorization: Bearer <key> (OpenAI, DashScope, Moonshot, ...)
export const AUTH_X_API_KEY: u8 = 1; // x-api-key: <key> (Anthropic)
export const AUTH_API_KEY: u8 = 2; // api-key: <key> (Azure OpenAI)
export const AUTH_NAMES: string[] = ["bearer", "x-api-key", "api-key"];
const AUTH_HEADERS: string[] = ["authorization", "x-api-key", "api-key"];

/** `stream` not configured. */
export const STREAM_UNSET: i8 = -1;

/** What a provider, or one of its routes, does to a request. */
export class Target {
  /** Upstream path for a request whose path is not a known API path; "" keeps the path. */
  path: string = "";
  /** Model inserted when the body names none; "" inserts nothing. */
  model: string = "";
  stream: i8 = STREAM_UNSET;
  /** The inline key, or the name of the VM environment variable holding it (never both). */
  apiKey: string = "";
  apiKeyEnv: string = "";
  auth: u8 = AUTH_BEARER;
  /** The auth header, encoded once: name and value (null when there is no key). */
  authName: ArrayBuffer = new ArrayBuffer(0);
  authValue: ArrayBuffer | null = null;
  /** The `:path` value, encoded once. */
  pathBytes: ArrayBuffer = new ArrayBuffer(0);
  /** The model as a JSON string literal, escaped once. */
  modelJson: string = "";

  /** Whether the body may change, so that content-length must go in the headers callback. */
  get rewritesBody(): bool {
    return this.model.length > 0 || this.stream != STREAM_UNSET;
  }

  /** This target with the fields a route sets laid over it. */
  overriddenBy(route: Target): Target {
    const t = new Target();
    t.path = route.path.length > 0 ? route.path : this.path;
    t.model = route.model.length > 0 ? route.model : this.model;
    t.stream = route.stream != STREAM_UNSET ? route.stream : this.stream;
    const ownKey = route.apiKey.length > 0 || route.apiKeyEnv.length > 0;
    t.apiKey = ownKey ? route.apiKey : this.apiKey;
    t.apiKeyEnv = ownKey ? route.apiKeyEnv : this.apiKeyEnv;
    t.auth = this.auth;
    return t;
  }

  /** Sets the encoded header values; `key` is the key itself ("" when there is none). */
  seal(key: string): void {
    this.authName = String.UTF8.encode(AUTH_HEADERS[this.auth]);
    this.authValue =
      key.length == 0 ? null : String.UTF8.encode(this.auth == AUTH_BEARER ? "Bearer " + key : key);
    this.pathBytes = String.UTF8.encode(this.path);
    this.modelJson = jsonString(this.model);
  }
}

export class Provider {
  /** Lower case, without port. */
  host: string = "";
  target: Target = new Target();
  /** Targets by Envoy route name, each already laid over the provider's own. */
  routes: Map<string, Target> = new Map<string, Target>();
  /** The same as two arrays, for a lookup that compares the route name in place (no string). */
  routeNames: string[] = [];
  routeTargets: Target[] = [];

  addRoute(name: string, target: Target): void {
    this.routes.set(name, target);
    const i = this.routeNames.indexOf(name);
    if (i >= 0) {
      this.routeTargets[i] = target;
    } else {
      this.routeNames.push(name);
      this.routeTargets.push(target);
    }
  }

  /** The target for a request Envoy routed by the named route ("" when the route has no name). */
  targetFor(routeName: string | null): Target {
    if (routeName !== null && routeName.length > 0 && this.routes.has(routeName)) {
      return this.routes.get(routeName);
    }
    return this.target;
  }
}

export class Routing {
  providers: Provider[] = [];

  get active(): bool {
    return this.providers.length > 0;
  }

  /** The provider whose host is the host of `authority` (a host with an optional port), or null. */
  find(authority: string): Provider | null {
    const n = this.providers.length;
    if (n == 0) return null;
    const host = hostFromAuthority(authority);
    for (let i = 0; i < n; i++) {
      const p = unchecked(this.providers[i]);
      if (sameHost(p.host, host)) return p;
    }
    return null;
  }

  /**
   * The provider whose key may go through an upstream cluster (keyClusterHost): its host is
   * exactly the cluster's, with no port to strip. Null for any other cluster.
   */
  forCluster(cluster: string): Provider | null {
    if (this.providers.length == 0) return null;
    const at = keyClusterHostAt(cluster);
    if (at < 0) return null;
    const n = cluster.length - at;
    for (let i = 0, m = this.providers.length; i < m; i++) {
      const p = unchecked(this.providers[i]);
      if (p.host.length == n && sameHostAt(p.host, cluster, at)) return p;
    }
    return null;
  }
}

/**
 * Where the host of an Istio outbound cluster through which a provider's key may go starts, or
 * -1. Only `outbound|<port>|<subset>|<host>` with a numeric port and a bare host qualifies: an
 * `inbound|...` cluster is the pod's own service, a host with a port (`...|api.example.com:443`)
 * is no Istio service name, and PassthroughCluster or a plain Envoy cluster has no host at all.
 * Found in place: no string is made per request.
 */
function keyClusterHostAt(cluster: string): i32 {
  if (!cluster.startsWith("outbound|")) return -1;
  const a = 8; // the first '|'
  const b = cluster.indexOf("|", a + 1);
  if (b <= a + 1) return -1;
  for (let i = a + 1; i < b; i++) {
    const c = cluster.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
  }
  const c = cluster.indexOf("|", b + 1);
  if (c < 0 || c + 1 >= cluster.length) return -1;
  for (let i = c + 1, n = cluster.length; i < n; i++) {
    const d = cluster.charCodeAt(i);
    if (d == 0x7c || d == 0x3a || d == 0x2f) return -1; // '|', ':', '/'
  }
  return c + 1;
}

/** The host keyClusterHostAt finds, or null. */
export function keyClusterHost(cluster: string): string | null {
  const at = keyClusterHostAt(cluster);
  return at < 0 ? null : cluster.substring(at);
}

/** Whether `text` from `at` on is `lower` (already lower case), ignoring ASCII case. */
function sameHostAt(lower: string, text: string, at: i32): bool {
  const n = lower.length;
  if (text.length - at != n) return false;
  for (let i = 0; i < n; i++) {
    let c = text.charCodeAt(at + i);
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c != lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Whether `host` is `lower` (already lower case), ignoring ASCII case. Exact: a longer or shorter
 * name (`x` + host, host + `.evil.example`) never matches.
 */
export function sameHost(lower: string, host: string): bool {
  return sameHostAt(lower, host, 0);
}

/** `path` with the query string of `original` (if any) kept: `/?a=1` -> `/v1/chat/completions?a=1`. */
export function withQuery(path: string, original: string): string {
  const q = original.indexOf("?");
  return q >= 0 ? path + original.substring(q) : path;
}
