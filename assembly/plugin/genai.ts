// SPDX-License-Identifier: Apache-2.0
// OpenTelemetry's gen_ai_client_token_usage histogram (`gen_ai_metrics`): its own series table,
// keyed by the conventions' labels rather than the plugin's dimensions, built on first use so
// that a VM with the option off holds nothing for it.

import { SeriesTable } from "../telemetry/series";
import { tagValue, genAiTokenUsageName, OTHER } from "../telemetry/names";
import {
  operationName,
  providerName,
  apiProvider,
  tokenAccounting,
  inputTokens,
  outputTokens,
  TOKEN_INPUT,
  TOKEN_OUTPUT,
} from "../telemetry/genai";
import { Usage } from "../llm/usage";
import { defineHistogram, recordHistogram, log, LogLevel } from "../host/host";

const SLOT_INPUT: i32 = 0;
const SLOT_OUTPUT: i32 = 1;

export class GenAiHistograms {
  private table: SeriesTable | null = null;
  /** Metric definitions since the owner last asked (their stat names are garbage). */
  defined: i32 = 0;
  /** The labels of the call being recorded, cleaned once. */
  private path: string = "";
  private operation: string = "";
  /** The API's family (apiProvider): with the server, it decides the provider's name. */
  private family: string = "";
  private requestModel: string = "";
  private responseModel: string = "";
  private server: string = "";

  /** Forgets every series (a new configuration). */
  clear(): void {
    const t = this.table;
    if (t !== null) t.clear();
  }

  /**
   * Records one call's input and output tokens as the conventions count them. Returns true when
   * its series was folded (models and server `other`) because the VM already holds `maxSeries`.
   */
  record(
    path: string,
    server: string,
    model: string,
    responseModel: string,
    usage: Usage,
    maxSeries: i32,
  ): bool {
    let t = this.table;
    if (t === null) this.table = t = new SeriesTable();
    const accounting = tokenAccounting(path);
    const input = inputTokens(usage.prompt, usage.cached, usage.cacheWrite, accounting);
    const output = outputTokens(usage.completion, usage.reasoning, accounting);
    if (input < 0 && output < 0) return false;
    this.path = path;
    this.operation = operationName(path);
    this.family = apiProvider(path);
    this.requestModel = tagValue(model);
    this.responseModel = tagValue(responseModel);
    this.server = tagValue(server);
    let series = this.find(t);
    let folded = false;
    if (series < 0) {
      if (t.size < maxSeries) {
        series = t.add();
      } else {
        // Operations and API families are few; the models and the server are what clients
        // choose. A folded series is named by its family (its server is `other`).
        folded = true;
        this.requestModel = OTHER;
        this.responseModel = OTHER;
        this.server = OTHER;
        series = this.find(t);
        if (series < 0) series = t.add();
      }
    }
    if (input >= 0) this.sample(t, series, SLOT_INPUT, <u64>input);
    if (output >= 0) this.sample(t, series, SLOT_OUTPUT, <u64>output);
    return folded;
  }

  private find(t: SeriesTable): i32 {
    t.begin();
    t.part(this.operation);
    t.part(this.family);
    t.part(this.requestModel);
    t.part(this.responseModel);
    t.part(this.server);
    return t.find();
  }

  private sample(t: SeriesTable, series: i32, slot: i32, value: u64): void {
    let id = t.id(series, slot);
    if (id < 0) {
      const name = genAiTokenUsageName(
        slot == SLOT_INPUT ? TOKEN_INPUT : TOKEN_OUTPUT,
        this.operation,
        // Found once per series: a host table lookup.
        providerName(this.server, this.path),
        this.requestModel,
        this.responseModel,
        this.server,
      );
      id = defineHistogram(name);
      if (id < 0) {
        log(LogLevel.Warn, "asm-llm-proxy: the proxy refused to define metric " + name);
        return;
      }
      t.setId(series, slot, <u32>id);
      this.defined++;
    }
    recordHistogram(<u32>id, value);
  }
}
