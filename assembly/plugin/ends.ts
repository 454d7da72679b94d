// SPDX-License-Identifier: Apache-2.0
// Where a body ends: what its parser concluded, and the one log line a body that could not be
// read gets. A request body that is not JSON records nothing from itself (debug: the client's
// own business); a response that could not be read records no tokens (info: the operator's
// telemetry is missing). After a reset, a reader drops the message the reset cut short, in every
// framing, as a JSON document cut by a reset is (README, failure behaviour).

import { JsonScanner } from "../llm/json";
import { MessageReader } from "../llm/reader";
import { Usage } from "../llm/usage";
import { ISSUE_PARSE_ERROR } from "../telemetry/names";
import { log, logEnabled, LogLevel } from "../host/host";
import { Call, bodyUsage } from "./publish";

const ERROR_NAMES: string[] = ["none", "syntax error", "nesting too deep", "truncated"];

/** Whether the request body was one JSON document; if not, it is counted and logged. */
export function requestRead(call: Call, scanner: JsonScanner): bool {
  if (scanner.finish()) return true;
  call.root.issue(ISSUE_PARSE_ERROR);
  if (logEnabled(LogLevel.Debug)) {
    log(
      LogLevel.Debug,
      "asm-llm-proxy: request body of " +
        call.logPath +
        " is not JSON (" +
        ERROR_NAMES[scanner.error] +
        "); nothing recorded from it",
    );
  }
  return false;
}

/** A 2xx JSON (or JSON array) response with no body at all: not a document. */
export function emptyBody(call: Call): void {
  call.responseParseFailed = true;
  call.root.issue(ISSUE_PARSE_ERROR);
  log(LogLevel.Info, "asm-llm-proxy: response body of " + call.logPath + " is empty; no tokens recorded");
}

/** What a response read as one JSON document said, or null when it said nothing readable. */
export function documentUsage(call: Call, scanner: JsonScanner): Usage | null {
  if (scanner.finish()) {
    const usage = bodyUsage;
    usage.reset();
    usage.add(scanner);
    return usage;
  }
  if (call.responseEnded) {
    call.responseParseFailed = true;
    call.root.issue(ISSUE_PARSE_ERROR);
    log(
      LogLevel.Info,
      "asm-llm-proxy: response body of " +
        call.logPath +
        " could not be read (" +
        ERROR_NAMES[scanner.error] +
        "); no tokens recorded",
    );
  }
  return null;
}

/** What a response read as a stream of messages said; unreadable messages counted and logged. */
export function streamUsage(call: Call, reader: MessageReader): Usage {
  reader.finish(call.responseEnded);
  const usage = reader.usage;
  const invalid = reader.invalidEvents;
  if (invalid > 0) {
    // Some events or messages could not be read: the usage comes from the others, if any.
    call.root.issue(ISSUE_PARSE_ERROR);
    if (!usage.hasTokens) call.responseParseFailed = true;
    log(
      LogLevel.Info,
      "asm-llm-proxy: " +
        invalid.toString() +
        " event(s) of the stream of " +
        call.logPath +
        " could not be read; " +
        (usage.hasTokens
          ? "usage taken from the other " + reader.events.toString()
          : "none of the other " + reader.events.toString() + " carried usage"),
    );
  }
  return usage;
}
