// SPDX-License-Identifier: Apache-2.0
// The local proxy's access log: the JSON labels of deploy/istio/meshconfig-access-log.yaml (the
// seed's fields and the plugin's FILTER_STATE fields), each rendered as Envoy renders its
// command ("-" for a value it does not have).

import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { HttpStream } from "../../tests/host/host.ts";

export const ACCESS_LOG_PROVIDER = "llm-access-log";

/** The labels of the mesh's llm-access-log provider. */
export function loadLogFormat(file: string): Record<string, string> {
  const mesh = parseYaml(readFileSync(file, "utf8"));
  const providers: any[] = mesh?.spec?.meshConfig?.extensionProviders ?? [];
  const labels = providers.find((p) => p?.name === ACCESS_LOG_PROVIDER)?.envoyFileAccessLog?.logFormat
    ?.labels;
  if (typeof labels !== "object" || labels === null)
    throw new Error(`${file}: no ${ACCESS_LOG_PROVIDER} labels`);
  return labels;
}

/** What the proxy knows of a finished request, by Envoy command name. */
export interface RequestFacts {
  stream: HttpStream;
  /** Response headers as sent downstream. */
  responseHeaders: Array<[string, string]>;
  values: Record<string, string | number | undefined>;
}

const COMMAND = /%([A-Z_]+)(?:\(([^)]*)\))?(?::(\d+))?%/g;

function header(pairs: Array<[string, string]>, names: string): string | undefined {
  for (const name of names.toLowerCase().split("?")) {
    const found = pairs.find(([k]) => k === name);
    if (found) return found[1];
  }
  return undefined;
}

/** One format string with Envoy's commands replaced. */
export function renderField(format: string, facts: RequestFacts): string {
  return format.replace(
    COMMAND,
    (_all, command: string, arg: string | undefined, max: string | undefined) => {
      let value: string | number | undefined;
      if (command === "FILTER_STATE") {
        const [key, kind = ""] = (arg ?? "").split(":");
        if (kind !== "PLAIN") throw new Error(`%FILTER_STATE(${arg})%: only :PLAIN is supported`);
        value = facts.stream.state(key);
      } else if (command === "REQ") value = header(facts.stream.requestHeaders, arg ?? "");
      else if (command === "RESP") value = header(facts.responseHeaders, arg ?? "");
      else if (command in facts.values) value = facts.values[command];
      else throw new Error(`access-log command %${command}% is not supported by the local proxy`);
      const text = value === undefined ? "" : String(value);
      if (text === "") return "-";
      return max ? text.slice(0, Number(max)) : text;
    },
  );
}

/** The JSON line of a request. */
export function accessLogLine(labels: Record<string, string>, facts: RequestFacts): string {
  const out: Record<string, string> = {};
  for (const [k, f] of Object.entries(labels)) out[k] = renderField(f, facts);
  return JSON.stringify(out);
}

/** The commands the proxy sets in RequestFacts.values. */
export const VALUE_COMMANDS = [
  "BYTES_RECEIVED",
  "BYTES_SENT",
  "DOWNSTREAM_LOCAL_ADDRESS",
  "DOWNSTREAM_REMOTE_ADDRESS",
  "DURATION",
  "PROTOCOL",
  "REQUESTED_SERVER_NAME",
  "RESPONSE_CODE",
  "RESPONSE_FLAGS",
  "ROUTE_NAME",
  "START_TIME",
  "UPSTREAM_CLUSTER",
  "UPSTREAM_HOST",
  "UPSTREAM_LOCAL_ADDRESS",
  "UPSTREAM_TRANSPORT_FAILURE_REASON",
];

/** Refuses, before any request, a format with a command the proxy cannot render. */
export function checkFormat(labels: Record<string, string>): void {
  for (const [label, format] of Object.entries(labels)) {
    for (const [, command, arg] of format.matchAll(COMMAND)) {
      if (command === "REQ" || command === "RESP") continue;
      if (command === "FILTER_STATE" && arg?.endsWith(":PLAIN")) continue;
      if (!VALUE_COMMANDS.includes(command))
        throw new Error(`access-log label ${label}: %${command}% is not supported`);
    }
  }
}
