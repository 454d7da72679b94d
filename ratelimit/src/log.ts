// SPDX-License-Identifier: Apache-2.0
// Structured logs: one JSON object a line, {time, level, msg, ...fields}, on stdout, at or above
// LOG_LEVEL (debug, info, warn, error; info by default).

export const LEVELS = ["debug", "info", "warn", "error"] as const;
export type Level = (typeof LEVELS)[number];

export type Logger = Record<Level, (msg: string, fields?: Record<string, unknown>) => void>;

export function createLogger(
  level: string = "info",
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  const min = LEVELS.indexOf(level as Level);
  if (min < 0) throw new Error(`LOG_LEVEL must be one of ${LEVELS.join(", ")}, not ${level}`);
  const out = {} as Logger;
  for (const [i, name] of LEVELS.entries()) {
    out[name] = (msg, fields) => {
      if (i < min) return;
      write(JSON.stringify({ time: new Date().toISOString(), level: name, msg, ...fields }) + "\n");
    };
  }
  return out;
}
