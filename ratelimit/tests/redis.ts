// SPDX-License-Identifier: Apache-2.0
// A real redis-server (Debian's package) on 127.0.0.1 and a free port, started and stopped by a
// test, with nothing written to disk. `REDIS_SKIP` says why the tests that need one skip.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";

export const REDIS_SKIP: string | false =
  spawnSync("sh", ["-c", "command -v redis-server"]).status === 0
    ? false
    : "redis-server is not installed (Debian package redis-server; .ci/run installs it as root)";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export class RedisServer {
  private child: ChildProcess | null = null;
  output = "";

  private constructor(readonly port: number) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts redis-server and resolves once it accepts connections. */
  static async start(port?: number): Promise<RedisServer> {
    const r = new RedisServer(port ?? (await freePort()));
    await r.restart();
    return r;
  }

  /** Starts it again on the same port (empty: nothing is saved). */
  restart(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    this.output = "";
    const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${this.output}`)), 10000);
      const seen = (c: Buffer) => {
        this.output += c.toString();
        if (this.output.includes("Ready to accept connections")) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on("data", seen);
      child.stderr!.on("data", seen);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${this.output}`));
      });
    });
  }

  /** Sends the server a signal (SIGSTOP makes it hang, SIGCONT lets it go on). */
  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  /** Stops the server it started and waits for the process to end. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    });
  }
}
