// SPDX-License-Identifier: Apache-2.0
// The image `npm run image` builds (scripts/image.ts): reproducible, in the layout Istio's Wasm
// image fetcher accepts, and what deploy/istio/Dockerfile.wasm describes; then pushed with
// Debian's skopeo to a Debian docker-registry on loopback, inspected and pulled back. The registry
// test is skipped, with the reason, where those tools are not installed; .ci/run installs them.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { image, writeImageLayout, MEDIA_TYPES, WASM_FILE } from "../scripts/image.ts";
import { ROOT, RELEASE_WASM } from "./seed.ts";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const absent = ["skopeo", "docker-registry"].filter((c) => !has(c));
const noTools =
  absent.length === 0
    ? false
    : `${absent.join(" and ")} not installed (Debian: apt-get install skopeo docker-registry); .ci/run installs them`;

/** The entries of a tar archive: name and content. */
function untar(bytes: Uint8Array): Array<{ name: string; data: Uint8Array }> {
  const out: Array<{ name: string; data: Uint8Array }> = [];
  for (let p = 0; p + 512 <= bytes.length;) {
    const header = bytes.subarray(p, p + 512);
    if (header.every((b) => b === 0)) break;
    const text = (from: number, len: number) =>
      new TextDecoder().decode(header.subarray(from, from + len)).replace(/\0.*$/s, "");
    const size = parseInt(text(124, 12), 8);
    out.push({ name: text(0, 100), data: bytes.subarray(p + 512, p + 512 + size) });
    p += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** The module a manifest's single layer holds, read as Istio's fetcher reads it. */
function moduleOf(manifest: any, blob: (digest: string) => Uint8Array): Uint8Array {
  assert.equal(manifest.layers.length, 1, "Istio's compat variant has exactly one layer");
  const layer = blob(manifest.layers[0].digest);
  assert.equal("sha256:" + sha256(layer), manifest.layers[0].digest);
  const entries = untar(gunzipSync(layer));
  const wasm = entries.find((e) => e.name.split("/").pop() === WASM_FILE);
  assert.ok(wasm, `${WASM_FILE} in the layer`);
  return wasm.data;
}

test("the image is reproducible, in Istio's compat layout, and holds the release module", () => {
  const wasm = readFileSync(RELEASE_WASM);
  const a = mkdtempSync(join(tmpdir(), "asm-llm-proxy-img-"));
  const b = mkdtempSync(join(tmpdir(), "asm-llm-proxy-img-"));
  try {
    const one = writeImageLayout(RELEASE_WASM, a, "0.1.0");
    const two = writeImageLayout(RELEASE_WASM, b, "0.1.0");
    assert.equal(one.digest, two.digest, "same module, same digest");
    const files = (d: string) => readdirSync(d + "/blobs/sha256").sort();
    assert.deepEqual(files(a), files(b));
    for (const f of files(a))
      assert.deepEqual(readFileSync(`${a}/blobs/sha256/${f}`), readFileSync(`${b}/blobs/sha256/${f}`), f);
    assert.equal(readFileSync(a + "/index.json", "utf8"), readFileSync(b + "/index.json", "utf8"));
    assert.equal(one.wasmSha256, sha256(wasm));
    // The layout: index.json names the manifest by tag; the manifest, its config and its layer.
    const index = JSON.parse(readFileSync(a + "/index.json", "utf8"));
    assert.equal(index.manifests[0].annotations["org.opencontainers.image.ref.name"], "0.1.0");
    assert.equal(index.manifests[0].digest, one.digest);
    const blob = (d: string) => readFileSync(`${a}/blobs/sha256/${d.replace(/^sha256:/, "")}`);
    const manifest = JSON.parse(blob(one.digest).toString());
    assert.equal(manifest.mediaType, MEDIA_TYPES.manifest);
    assert.equal(manifest.config.mediaType, MEDIA_TYPES.config);
    assert.equal(manifest.layers[0].mediaType, MEDIA_TYPES.layer);
    assert.equal(manifest.annotations["module.wasm.image/variant"], "compat");
    assert.deepEqual(moduleOf(manifest, blob), wasm);
    // The config names the uncompressed layer, as OCI requires.
    const config = JSON.parse(blob(manifest.config.digest).toString());
    assert.deepEqual(config.rootfs.diff_ids, [
      "sha256:" + sha256(gunzipSync(blob(manifest.layers[0].digest))),
    ]);
    // One file in the layer, named as Dockerfile.wasm's COPY names it: the layout `docker build`
    // gives that Dockerfile (FROM scratch adds no layer).
    const entries = untar(gunzipSync(blob(manifest.layers[0].digest)));
    assert.deepEqual(
      entries.map((e) => e.name),
      [WASM_FILE],
    );
    const dockerfile = readFileSync(ROOT + "deploy/istio/Dockerfile.wasm", "utf8");
    const steps = dockerfile.split("\n").filter((l) => /^[A-Z]+ /.test(l));
    assert.deepEqual(steps, ["FROM scratch", `COPY build/asm-llm-proxy.wasm ./${WASM_FILE}`]);
    // A different module gives a different digest.
    const other = image(readFileSync(ROOT + "build/asm-llm-proxy.debug.wasm"));
    assert.notEqual(other.digest, one.digest);
  } finally {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  }
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

test(
  "the image round-trips through a real registry (docker-registry, skopeo) with its media types and module",
  { skip: noTools, timeout: 60_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "asm-llm-proxy-reg-"));
    let registry: ChildProcess | undefined;
    try {
      const built = writeImageLayout(RELEASE_WASM, join(dir, "layout"), "0.1.0");
      const port = await freePort();
      writeFileSync(
        join(dir, "registry.yml"),
        [
          "version: 0.1",
          "log:",
          "  level: error",
          "storage:",
          "  filesystem:",
          `    rootdirectory: ${join(dir, "storage")}`,
          "http:",
          `  addr: 127.0.0.1:${port}`,
          "",
        ].join("\n"),
      );
      // skopeo's signature policy, so that no system file is needed.
      writeFileSync(
        join(dir, "policy.json"),
        JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }),
      );
      registry = spawn("docker-registry", ["serve", join(dir, "registry.yml")], { stdio: "ignore" });
      const end = Date.now() + 20_000;
      for (;;) {
        const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) break;
        if (Date.now() > end) throw new Error("docker-registry did not answer");
        await new Promise((r) => setTimeout(r, 100));
      }
      const ref = `docker://127.0.0.1:${port}/mesh/asm-llm-proxy:0.1.0`;
      const skopeo = (...args: string[]) => {
        const r = spawnSync("skopeo", ["--policy", join(dir, "policy.json"), ...args], {
          encoding: "utf8",
          env: { ...process.env, HOME: dir },
        });
        assert.equal(r.status, 0, `skopeo ${args.join(" ")}: ${r.stderr}`);
        return r.stdout;
      };
      skopeo("copy", "--quiet", "--dest-tls-verify=false", `oci:${join(dir, "layout")}:0.1.0`, ref);
      // The registry serves the manifest byte for byte: the digest `npm run image` printed.
      const raw = skopeo("inspect", "--raw", "--tls-verify=false", ref);
      assert.equal("sha256:" + sha256(Buffer.from(raw)), built.digest);
      const manifest = JSON.parse(raw);
      assert.equal(manifest.mediaType, MEDIA_TYPES.manifest);
      assert.equal(manifest.config.mediaType, MEDIA_TYPES.config);
      assert.deepEqual(
        manifest.layers.map((l: any) => l.mediaType),
        [MEDIA_TYPES.layer],
      );
      assert.equal(manifest.annotations["module.wasm.image/variant"], "compat");
      const inspected = JSON.parse(skopeo("inspect", "--tls-verify=false", ref));
      assert.equal(inspected.Digest, built.digest);
      // Pulled back: the layer's plugin.wasm is the release module.
      skopeo("copy", "--quiet", "--src-tls-verify=false", ref, `oci:${join(dir, "pulled")}:0.1.0`);
      const blob = (d: string) => readFileSync(join(dir, "pulled/blobs/sha256", d.replace(/^sha256:/, "")));
      const pulled = moduleOf(JSON.parse(blob(built.digest).toString()), blob);
      assert.equal(sha256(pulled), sha256(readFileSync(RELEASE_WASM)));
      // The registry refuses what it does not hold: the check can fail.
      const missing = spawnSync(
        "skopeo",
        [
          "--policy",
          join(dir, "policy.json"),
          "inspect",
          "--raw",
          "--tls-verify=false",
          ref.replace(":0.1.0", ":nope"),
        ],
        { encoding: "utf8", env: { ...process.env, HOME: dir } },
      );
      assert.notEqual(missing.status, 0);
    } finally {
      registry?.kill();
      if (registry && registry.exitCode === null) await new Promise((r) => registry!.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
