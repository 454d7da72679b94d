// SPDX-License-Identifier: Apache-2.0
// Host names: the host of an :authority, the service host of an Istio cluster name, and the
// ASCII lower case used to compare them (and header names, media types, encodings).
// Pure: no host imports.

/**
 * The service host of an Istio cluster name, `outbound|<port>|<subset>|<host>` (also inbound),
 * or null for any other cluster (PassthroughCluster, a plain Envoy cluster).
 */
export function serviceFromCluster(cluster: string): string | null {
  if (!cluster.startsWith("outbound|") && !cluster.startsWith("inbound|")) return null;
  // Exactly four fields: direction, port, subset, host.
  const a = cluster.indexOf("|");
  const b = cluster.indexOf("|", a + 1);
  const c = b < 0 ? -1 : cluster.indexOf("|", b + 1);
  if (a < 0 || b < 0 || c < 0 || cluster.indexOf("|", c + 1) >= 0) return null;
  return c + 1 < cluster.length ? cluster.substring(c + 1) : null;
}

/** The host of an :authority value, without its port: `api.example.com:443` → `api.example.com`. */
export function hostFromAuthority(authority: string): string {
  if (authority.startsWith("[")) {
    // An IPv6 literal: "[::1]:8080".
    const close = authority.indexOf("]");
    return close > 0 ? authority.substring(0, close + 1) : authority;
  }
  const colon = authority.lastIndexOf(":");
  return colon >= 0 ? authority.substring(0, colon) : authority;
}

/**
 * ASCII lower case. Header names and the media types and encodings compared here are ASCII;
 * String#toLowerCase would bring Unicode case tables into the module for nothing.
 */
export function asciiLower(s: string): string {
  let i = 0;
  const n = s.length;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) break;
    i++;
  }
  if (i == n) return s;
  const out = new Array<string>(n);
  for (let j = 0; j < n; j++) {
    const c = s.charCodeAt(j);
    out[j] = String.fromCharCode(c >= 0x41 && c <= 0x5a ? c + 0x20 : c);
  }
  return out.join("");
}

/** Whether `value` starts with `prefix` (lower case), ignoring ASCII case; allocates nothing. */
export function startsWithIgnoreCase(value: string, prefix: string): bool {
  const n = prefix.length;
  if (value.length < n) return false;
  for (let i = 0; i < n; i++) {
    let c = value.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c != prefix.charCodeAt(i)) return false;
  }
  return true;
}
