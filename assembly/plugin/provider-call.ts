// SPDX-License-Identifier: Apache-2.0
// A POST to a configured provider (`providers`): which provider and route it is for, and the
// request-header changes that complete it (path, authority of a split, key). Everything is read
// before any header changes, because each request-header change makes Envoy clear the route cache
// and choose the route again. Used within one request-header callback; the stream keeps the
// upstream cluster for its metrics.

import { Routing, Target, withQuery } from "../llm/routing";
import { serviceFromCluster } from "../llm/hosts";
import { getProperty, replaceHeader, log, logEnabled, LogLevel, HeaderMapType } from "../host/host";
import { firstProperty } from "./root";
import { H_PATH, H_AUTHORITY, CLUSTER_PATHS, P_XDS_ROUTE_NAME, P_ROUTE_NAME } from "./headers";

/** The route name, "" when the route has none; read only for a call to a provider with routes. */
function routeName(): string | null {
  const name = getProperty(P_XDS_ROUTE_NAME);
  return name !== null ? name : getProperty(P_ROUTE_NAME);
}

export class ProviderCall {
  /** The request's :path and :authority, as they go upstream. */
  path: string = "";
  authority: string = "";
  /** The upstream cluster, when read; "" when read and absent; null when not read. */
  cluster: string | null = null;
  /** The service host that cluster names (serviceFromCluster). */
  clusterService: string | null = null;
  /** The provider's host, when the route chose a provider other than the one the authority names. */
  private movedTo: string | null = null;
  /** The upstream cluster is the provider's own (Istio's outbound|port||host): the key may go. */
  private keyAllowed: bool = false;

  /**
   * The provider this POST is for and what its route sets, or null. The upstream cluster decides
   * when it names a provider host (a weighted VirtualService split chose it); the authority
   * otherwise. A cluster that names another service is not a provider call: its key stays home.
   * The key goes only where the cluster is the provider's own: not through PassthroughCluster
   * (no ServiceEntry), which would send it wherever the client's DNS pointed, without the TLS a
   * DestinationRule originates.
   */
  find(routing: Routing, path: string, authority: string, known: bool): Target | null {
    this.path = path;
    this.authority = authority;
    this.cluster = null;
    this.clusterService = null;
    this.movedTo = null;
    this.keyAllowed = false;
    let provider = routing.find(authority);
    if (provider === null && !known) return null;
    const cluster = firstProperty(CLUSTER_PATHS);
    this.cluster = cluster !== null ? cluster : "";
    const service = cluster !== null ? serviceFromCluster(cluster) : null;
    this.clusterService = service;
    if (service !== null) {
      const named = provider;
      provider = routing.find(service);
      // A weighted split sent the call to another provider: it gets its own host name too.
      if (provider !== null && provider !== named) this.movedTo = provider.host;
      this.keyAllowed = provider !== null;
    }
    if (provider === null) return null;
    return provider.targetFor(provider.routes.size > 0 ? routeName() : null);
  }

  /** Sets the provider's path (for a path that names no known API), authority and key. */
  apply(target: Target, known: bool): void {
    const path = this.path;
    if (!known && target.path.length > 0) {
      const upstream = withQuery(target.path, path);
      const bytes = upstream.length == target.path.length ? target.pathBytes : String.UTF8.encode(upstream);
      if (replaceHeader(HeaderMapType.RequestHeaders, H_PATH, bytes)) this.path = upstream;
    }
    const moved = this.movedTo;
    if (
      moved !== null &&
      replaceHeader(HeaderMapType.RequestHeaders, H_AUTHORITY, String.UTF8.encode(moved))
    ) {
      this.authority = moved;
    }
    // The configured key replaces whatever the client sent in that header.
    const key = target.authValue;
    if (key === null) return;
    if (this.keyAllowed) {
      replaceHeader(HeaderMapType.RequestHeaders, target.authName, key);
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
