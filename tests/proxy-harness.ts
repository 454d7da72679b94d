// SPDX-License-Identifier: Apache-2.0
// Runs `npm run proxy` (scripts/proxy.ts) as a user runs it, in a child process on loopback
// ports the system picks, for the proxy's tests and its benchmark: its access-log lines
// (stdout) and its log (stderr) are collected, and it is stopped with SIGINT as Ctrl-C stops it.

import { spawn, type ChildProcess } from "node:child_process";
import { request } from "node:http";
import { ROOT, RELEASE_WASM } from "./seed.ts";

export interface RunningProxy {
  child: ChildProcess;
  port: number;
  adminPort: number;
  /** Access-log lines so far, parsed. */
  logs: Array<Record<string, string>>;
  stderr: () => string;
  /** Ctrl-C: resolves with the exit code and everything it printed on stderr. */
  stop: () => Promise<{ code: number | null; stderr: string }>;
}

export interface ProxyRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function spawnProxy(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(
    process.execPath,
    ["--import", "tsx", ROOT + "scripts/proxy.ts", "--wasm", RELEASE_WASM, ...args],
    {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
}

/** Runs the proxy to its end (for --check and start-up errors). */
export function runProxy(args: string[], env: Record<string, string> = {}): Promise<ProxyRun> {
  const child = spawnProxy(args, env);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

/** Starts the proxy on free loopback ports and waits until it listens. */
export function startProxy(args: string[], env: Record<string, string> = {}): Promise<RunningProxy> {
  const child = spawnProxy(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", ...args], env);
  let stderr = "";
  let pending = "";
  const logs: Array<Record<string, string>> = [];
  child.stdout!.on("data", (d) => {
    pending += d;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const l of lines) if (l.trim() !== "") logs.push(JSON.parse(l));
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stderr!.on("data", (d) => {
      stderr += d;
      const m = /proxy on http:\/\/127\.0\.0\.1:(\d+), admin on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m && !("started" in child)) {
        Object.assign(child, { started: true });
        resolve({
          child,
          port: Number(m[1]),
          adminPort: Number(m[2]),
          logs,
          stderr: () => stderr,
          stop: async () => {
            child.kill("SIGINT");
            const code = await exited;
            return { code, stderr };
          },
        });
      }
    });
    void exited.then((code) => reject(new Error(`the proxy exited (${code}) before listening:\n${stderr}`)));
  });
}

/** Waits (polling) until a condition holds; fails after `ms` with the message. */
export async function until(condition: () => boolean, message: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out: ${message}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** GET on the admin listener. */
export function admin(p: RunningProxy, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port: p.adminPort, path }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve(body));
    })
      .on("error", reject)
      .end();
  });
}
