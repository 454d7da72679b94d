// SPDX-License-Identifier: Apache-2.0
// Istio VirtualServices as the routes of the local proxy, translated the way istiod translates
// them for a sidecar: each http[] entry is a route, each of its match[] entries one Envoy route
// (the entries are alternatives, the conditions inside one entry all apply), the first route that
// matches wins, its name is http[].name (".<match name>" appended when the match has one), and a
// weighted route[] picks a destination cluster outbound|<port>|<subset>|<host>. A host that no
// VirtualService names gets Istio's route for a service without one: name "default", cluster
// outbound|80||<host>. Fields the proxy does not emulate are reported and ignored; a field
// Istio's API does not have is an error, as `kubectl apply --validate=strict` refuses it.

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import type { RouteRule } from "../../tests/host/host.ts";

export interface ProxyRoutes {
  /** The routes in order (RouteRule.matches also checks the VirtualService's hosts). */
  rules: RouteRule[];
  /** Hosts some VirtualService names; a request for another host gets the default route. */
  covered: (authority: string) => boolean;
  /** Fields that are valid Istio but not emulated (ignored). */
  warnings: string[];
  /** Fields Istio does not have, or values of the wrong type. */
  errors: string[];
}

const SPEC_FIELDS = ["hosts", "gateways", "http", "tls", "tcp", "exportTo"];
const HTTP_FIELDS = ["name", "match", "route"];
const HTTP_IGNORED = [
  "redirect",
  "directResponse",
  "delegate",
  "rewrite",
  "timeout",
  "retries",
  "fault",
  "mirror",
  "mirrors",
  "mirrorPercentage",
  "mirrorPercent",
  "corsPolicy",
  "headers",
];
const MATCH_FIELDS = ["name", "uri", "method", "authority", "headers", "ignoreUriCase"];
const MATCH_IGNORED = [
  "scheme",
  "port",
  "sourceLabels",
  "gateways",
  "queryParams",
  "withoutHeaders",
  "sourceNamespace",
  "statPrefix",
];
const STRING_MATCH = ["exact", "prefix", "regex"];
const DESTINATION_ROUTE = ["destination", "weight"];
const DESTINATION = ["host", "subset", "port"];

/** The Envoy cluster Istio names for a destination. */
export function clusterName(host: string, port = 80, subset = ""): string {
  return `outbound|${port}|${subset}|${host}`;
}

/** The host of an Istio outbound cluster name, or undefined. */
export function clusterHost(cluster: string | undefined): string | undefined {
  const parts = cluster?.split("|");
  return parts && parts.length === 4 && parts[0] === "outbound" ? parts[3] : undefined;
}

/** The host part of an authority (no port; IPv6 brackets kept). */
export function hostOf(authority: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d*)?$/.exec(authority);
  return (m ? m[1] : authority).toLowerCase();
}

type Matcher = (value: string | undefined) => boolean;

class Reader {
  constructor(
    readonly where: string,
    readonly routes: ProxyRoutes,
  ) {}

  /** Checks an object's keys: `known` are read, `ignored` reported, anything else an error. */
  fields(value: unknown, at: string, known: string[], ignored: string[] = []): Record<string, any> {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.routes.errors.push(`${this.where}: ${at} must be an object`);
      return {};
    }
    for (const key of Object.keys(value)) {
      if (known.includes(key)) continue;
      if (ignored.includes(key))
        this.routes.warnings.push(`${this.where}: ${at}.${key} is not emulated (ignored)`);
      else this.routes.errors.push(`${this.where}: ${at}.${key} is not a field of Istio's VirtualService`);
    }
    return value as Record<string, any>;
  }

  list(value: unknown, at: string): unknown[] {
    if (value === undefined) return [];
    if (Array.isArray(value)) return value;
    this.routes.errors.push(`${this.where}: ${at} must be a list`);
    return [];
  }

  /** An Istio StringMatch as a test of a value (a regex matches the whole value, as RE2 does in Envoy). */
  stringMatch(value: unknown, at: string, ignoreCase = false): Matcher {
    const m = this.fields(value, at, STRING_MATCH);
    const kinds = STRING_MATCH.filter((k) => m[k] !== undefined);
    if (kinds.length !== 1) {
      this.routes.errors.push(`${this.where}: ${at} needs exactly one of exact, prefix, regex`);
      return () => false;
    }
    const kind = kinds[0];
    const want = m[kind];
    if (typeof want !== "string") {
      this.routes.errors.push(`${this.where}: ${at}.${kind} must be a string`);
      return () => false;
    }
    const fold = (s: string) => (ignoreCase ? s.toLowerCase() : s);
    if (kind === "exact") return (v) => v !== undefined && fold(v) === fold(want);
    if (kind === "prefix") return (v) => v !== undefined && fold(v).startsWith(fold(want));
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${want})$`, ignoreCase ? "i" : "");
    } catch (e) {
      this.routes.errors.push(`${this.where}: ${at}.regex: ${(e as Error).message}`);
      return () => false;
    }
    return (v) => v !== undefined && re.test(v);
  }

  /** One HTTPMatchRequest: every condition in it must hold. */
  match(
    value: unknown,
    at: string,
  ): { name?: string; test: (header: (n: string) => string | undefined) => boolean } {
    const m = this.fields(value, at, MATCH_FIELDS, MATCH_IGNORED);
    const tests: Array<(header: (n: string) => string | undefined) => boolean> = [];
    if (m.uri !== undefined) {
      const uri = this.stringMatch(m.uri, `${at}.uri`, m.ignoreUriCase === true);
      // Envoy matches the path without its query string (a prefix sees it all the same).
      tests.push((h) => uri(h(":path")?.split("?")[0]) || (m.uri.prefix !== undefined && uri(h(":path"))));
    }
    if (m.method !== undefined) {
      const method = this.stringMatch(m.method, `${at}.method`);
      tests.push((h) => method(h(":method")));
    }
    if (m.authority !== undefined) {
      const authority = this.stringMatch(m.authority, `${at}.authority`);
      tests.push((h) => authority(h(":authority")));
    }
    if (m.headers !== undefined) {
      const headers = this.fields(m.headers, `${at}.headers`, Object.keys(m.headers ?? {}));
      for (const [name, sm] of Object.entries(headers)) {
        const test = this.stringMatch(sm, `${at}.headers.${name}`);
        tests.push((h) => test(h(name.toLowerCase())));
      }
    }
    const name = typeof m.name === "string" ? m.name : undefined;
    return { name, test: (h) => tests.every((t) => t(h)) };
  }

  destinations(value: unknown, at: string): RouteRule["clusters"] {
    const routes = this.list(value, at);
    const out: RouteRule["clusters"] = [];
    routes.forEach((r, i) => {
      const dr = this.fields(r, `${at}[${i}]`, [...DESTINATION_ROUTE, "headers"]);
      // A destination's host name (headers.request.set.host or :authority: Envoy's
      // host_rewrite_literal, applied after routing); its other header operations are not emulated.
      const set = dr.headers?.request?.set ?? {};
      const authority: unknown = set.host ?? set[":authority"];
      const others = JSON.stringify({ ...dr.headers, request: { ...dr.headers?.request, set: undefined } });
      if (dr.headers !== undefined && others !== '{"request":{}}')
        this.routes.warnings.push(
          `${this.where}: ${at}[${i}].headers other than request.set.host are not emulated (ignored)`,
        );
      const d = this.fields(dr.destination, `${at}[${i}].destination`, DESTINATION);
      if (typeof d.host !== "string" || d.host === "") {
        this.routes.errors.push(`${this.where}: ${at}[${i}].destination.host is required`);
        return;
      }
      const port =
        d.port === undefined
          ? 80
          : Number(this.fields(d.port, `${at}[${i}].destination.port`, ["number"]).number);
      // One destination takes every request whatever its weight; among several, istiod drops
      // those of weight 0.
      const weight = routes.length === 1 ? 100 : Number(dr.weight ?? 0);
      if (!Number.isInteger(weight) || weight < 0)
        this.routes.errors.push(`${this.where}: ${at}[${i}].weight must be a whole number`);
      if (weight > 0)
        out.push({
          cluster: clusterName(d.host.toLowerCase(), port || 80, d.subset ?? ""),
          weight,
          ...(typeof authority === "string" ? { authority } : {}),
        });
    });
    return out;
  }
}

/** A VirtualService host pattern ("*", "*.example.com" or a name) as a test of a request host. */
function hostPattern(pattern: string): (host: string) => boolean {
  const p = pattern.toLowerCase();
  if (p === "*") return () => true;
  if (p.startsWith("*.")) return (h) => h.endsWith(p.slice(1));
  return (h) => h === p;
}

/** Reads VirtualServices from YAML files (several documents each; other kinds are skipped). */
export function loadRoutes(files: string[]): ProxyRoutes {
  const routes: ProxyRoutes = { rules: [], covered: () => false, warnings: [], errors: [] };
  const coveredBy: Array<(host: string) => boolean> = [];
  for (const file of files) {
    let docs;
    try {
      docs = parseAllDocuments(readFileSync(file, "utf8"));
    } catch (e) {
      routes.errors.push(`${file}: ${(e as Error).message}`);
      continue;
    }
    docs.forEach((doc, n) => {
      if (doc.errors.length > 0) {
        routes.errors.push(`${file}: ${doc.errors[0].message}`);
        return;
      }
      const vs = doc.toJS();
      if (vs === null || vs === undefined) return;
      const name = `${file} (${vs?.kind ?? "document"} ${vs?.metadata?.name ?? n + 1})`;
      if (vs?.kind !== "VirtualService") {
        routes.warnings.push(`${name}: not a VirtualService (skipped)`);
        return;
      }
      const r = new Reader(name, routes);
      const spec = r.fields(vs.spec, "spec", SPEC_FIELDS);
      const gateways = r.list(spec.gateways, "spec.gateways");
      if (gateways.length > 0 && !gateways.includes("mesh")) {
        routes.warnings.push(`${name}: bound to gateways without "mesh", not to sidecars (skipped)`);
        return;
      }
      if (spec.tls !== undefined || spec.tcp !== undefined)
        routes.warnings.push(`${name}: spec.tls and spec.tcp are not emulated (ignored)`);
      const hosts = r.list(spec.hosts, "spec.hosts").map((h) => hostPattern(String(h)));
      if (hosts.length === 0) routes.errors.push(`${name}: spec.hosts is required`);
      coveredBy.push((h) => hosts.some((t) => t(h)));
      const forHost = (header: (k: string) => string | undefined) => {
        const host = hostOf(header(":authority") ?? "");
        return hosts.some((t) => t(host));
      };
      r.list(spec.http, "spec.http").forEach((http, i) => {
        const at = `spec.http[${i}]`;
        const h = r.fields(http, at, HTTP_FIELDS, HTTP_IGNORED);
        const clusters = r.destinations(h.route, `${at}.route`);
        if (clusters.length === 0) {
          routes.warnings.push(`${name}: ${at} has no route[] (not emulated: skipped)`);
          return;
        }
        const matches = r.list(h.match, `${at}.match`).map((m, j) => r.match(m, `${at}.match[${j}]`));
        if (matches.length === 0) matches.push({ name: undefined, test: () => true });
        for (const m of matches) {
          // istiod: the http route's name, "." and the match's name when the match has one.
          const routeName = m.name ? `${h.name ?? ""}.${m.name}` : h.name;
          routes.rules.push({ name: routeName, clusters, matches: (hd) => forHost(hd) && m.test(hd) });
        }
      });
    });
  }
  routes.covered = (authority) => coveredBy.some((c) => c(hostOf(authority)));
  return routes;
}

/**
 * Adds, once per host, Istio's route for a host no VirtualService names (after every
 * VirtualService route): name "default", cluster outbound|80||<host>.
 */
export function ensureDefaultRoute(routes: ProxyRoutes, authority: string, added: Set<string>): void {
  const host = hostOf(authority);
  if (host === "" || added.has(host) || routes.covered(host)) return;
  added.add(host);
  routes.rules.push({
    name: "default",
    clusters: [{ cluster: clusterName(host), weight: 100 }],
    matches: (h) => hostOf(h(":authority") ?? "") === host,
  });
}
