// SPDX-License-Identifier: Apache-2.0
// A POST to a configured provider (`providers`): which provider and route it is for, and the
// request-header changes that complete it (path, key). Everything is read before any header
// changes, because each request-header change makes Envoy clear the route cache and choose the
// route again (after every decoder filter, in the router). The plugin therefore changes no header
// a route of the shipped bundle matches on, never :authority (a split gives its second host its
// host name in the route, applied after routing), and records which cluster a key was allowed
// for, so that the stream can check the router's final choice when the response starts. Used
// within one request-header callback; the stream keeps what it needs.

import { Routing, Provider, Target, withQuery } from "../llm/routing";
import { serviceFromCluster } from "../llm/hosts";
import {
  propertyIndex,
  propertyIs,
  getProperty,
  replaceHeader,
  log,
  logEnabled,
  LogLevel,
  HeaderMapType,
} from "../host/host";
import { Root, firstProperty } from "./root";
import { H_PATH, CLUSTER_PATHS, ROUTE_NAME_PATHS } from "./headers";

/**
 * The provider's target for the route Envoy chose, its route name compared in place with the
 * provider's route names (no string made); read only for a provider with routes.
 */
function routeTarget(provider: Provider): Target {
  if (provider.routeNames.length == 0) return provider.target;
  const i = propertyIndex(ROUTE_NAME_PATHS, provider.routeNames);
  return i >= 0 ? unchecked(provider.routeTargets[i]) : provider.target;
}

export class ProviderCall {
  /** The request's :path and :authority, as they go upstream. */
  path: string = "";
  authority: string = "";
  /** The upstream cluster, when read; "" when read and absent; null when not read. */
  cluster: string | null = null;
  /** The service host that cluster names (serviceFromCluster). */
  clusterService: string | null = null;
  /**
   * The upstream cluster is the provider's own (Istio's outbound|<port>|<subset>|<host> with the
   * provider's exact host, llm/routing.ts keyClusterHost): the key may go.
   */
  private keyAllowed: bool = false;
  private providerHost: string = "";
  /** The provider whose key was set, and the cluster it was allowed for; null when none was. */
  keyHost: string | null = null;
  keyCluster: string | null = null;

  /**
   * The provider this POST is for and what its route sets, or null. The upstream cluster decides
   * when it names a provider host (a weighted VirtualService split chose it); the authority
   * otherwise. A cluster that names another service is not a provider call: its key stays home.
   * The key goes only where the cluster is the provider's own: not through PassthroughCluster
   * (no ServiceEntry), which would send it wherever the client's DNS pointed, without the TLS a
   * DestinationRule originates, nor through an inbound cluster or one whose host has a port.
   */
  find(routing: Routing, path: string, authority: string, known: bool): Target | null {
    this.path = path;
    this.authority = authority;
    this.cluster = null;
    this.clusterService = null;
    this.keyAllowed = false;
    this.keyHost = null;
    this.keyCluster = null;
    let provider = routing.find(authority);
    if (provider === null && !known) return null;
    const cluster = firstProperty(CLUSTER_PATHS);
    this.cluster = cluster !== null ? cluster : "";
    const service = cluster !== null ? serviceFromCluster(cluster) : null;
    this.clusterService = service;
    if (service !== null) {
      // The cluster's provider, which a weighted split may have chosen over the authority's.
      provider = routing.find(service);
      this.keyAllowed = provider !== null && routing.forCluster(cluster!) === provider;
    }
    if (provider === null) return null;
    this.providerHost = provider.host;
    return routeTarget(provider);
  }

  /** Sets the provider's path (for a path that names no known API) and key. */
  apply(target: Target, known: bool): void {
    const path = this.path;
    if (!known && target.path.length > 0) {
      const upstream = withQuery(target.path, path);
      const bytes = upstream.length == target.path.length ? target.pathBytes : String.UTF8.encode(upstream);
      if (replaceHeader(HeaderMapType.RequestHeaders, H_PATH, bytes)) this.path = upstream;
    }
    // The configured key replaces whatever the client sent in that header.
    const key = target.authValue;
    if (key === null) return;
    if (this.keyAllowed) {
      if (replaceHeader(HeaderMapType.RequestHeaders, target.authName, key)) {
        this.keyHost = this.providerHost;
        this.keyCluster = this.cluster;
      }
    } else if (logEnabled(LogLevel.Debug)) {
      const cluster = this.cluster !== null && this.cluster!.length > 0 ? this.cluster! : "-";
      log(
        LogLevel.Debug,
        "asm-llm-proxy: no key sent to " +
          this.authority +
          ": upstream cluster " +
          cluster +
          " is not the provider's",
      );
    }
  }
}

/** One per VM: a provider call is decided and completed within its request-header callback. */
export const providerCall = new ProviderCall();

/**
 * Once the router has chosen (from the response on, `xds.cluster_name` is final): a key that went
 * with the call to another cluster than the one it was allowed for is an error, logged with both
 * clusters (never the key) and counted per provider.
 */
export function checkKeyCluster(root: Root, host: string, allowed: string): void {
  if (propertyIs(CLUSTER_PATHS, allowed) != 0) return; // the same, or not known to the proxy
  let final = getProperty(CLUSTER_PATHS[0]);
  if (final === null || final.length == 0) final = getProperty(CLUSTER_PATHS[1]);
  log(
    LogLevel.Error,
    "asm-llm-proxy: the key of provider " +
      host +
      ", allowed for cluster " +
      allowed +
      ", went with a call Envoy routed to cluster " +
      (final !== null ? final : "-") +
      " after the plugin's header changes: a route matches on :path, the auth header, accept-encoding or content-length",
  );
  root.keyMisrouted(host);
}
