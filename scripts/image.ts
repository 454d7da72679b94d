// SPDX-License-Identifier: Apache-2.0
// `npm run image`: the release module as an OCI image that Istio's Wasm image fetcher loads,
// built without Docker, byte for byte reproducible. The form is the "compat" variant of the Wasm
// image specification that Istio's pkg/wasm accepts: an OCI image manifest with exactly one layer
// of media type application/vnd.oci.image.layer.v1.tar+gzip whose tar holds `plugin.wasm` (the
// annotation module.wasm.image/variant=compat marks it). It is what `docker build` makes of
// deploy/istio/Dockerfile.wasm (FROM scratch, one COPY to plugin.wasm), with OCI media types.
// Written as an OCI image layout (oci-layout, index.json, blobs/sha256/) that `skopeo copy`,
// `crane push` or `oras` push to any registry.
//
// Reproducible: the tar entry has fixed mode, owner and time (0); the gzip stream uses stored
// (uncompressed) deflate blocks, so no compressor version or level can change a byte; JSON is
// written with a fixed key order. The same .wasm therefore always gives the same digest.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const MEDIA_TYPES = {
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
};
/** The file Istio's fetcher looks for in the layer (its base name). */
export const WASM_FILE = "plugin.wasm";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A ustar archive of one regular file, mode 0644, owner 0:0, mtime 0. */
export function tar(name: string, data: Uint8Array): Uint8Array {
  const header = new Uint8Array(512);
  const put = (offset: number, text: string) => header.set(new TextEncoder().encode(text), offset);
  const octal = (offset: number, width: number, n: number) =>
    put(offset, n.toString(8).padStart(width - 1, "0") + "\0");
  put(0, name);
  octal(100, 8, 0o644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, data.length);
  octal(136, 12, 0);
  put(148, "        "); // the checksum is computed with its own field as spaces
  put(156, "0");
  put(257, "ustar\u000000");
  const sum = header.reduce((a, b) => a + b, 0);
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  const padded = Math.ceil(data.length / 512) * 512;
  const out = new Uint8Array(512 + padded + 1024); // two zero blocks end the archive
  out.set(header, 0);
  out.set(data, 512);
  return out;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** gzip (RFC 1952) with stored deflate blocks (RFC 1951 §3.2.4): no compressor involved. */
export function gzipStored(data: Uint8Array): Uint8Array {
  const blocks = Math.max(1, Math.ceil(data.length / 0xffff));
  const out = new Uint8Array(10 + blocks * 5 + data.length + 8);
  // ID1 ID2, CM=deflate, no flags, MTIME=0, XFL=0, OS=3 (Unix): fixed whatever the platform.
  out.set([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3], 0);
  let p = 10;
  for (let i = 0; i < blocks; i++) {
    const chunk = data.subarray(i * 0xffff, Math.min(data.length, (i + 1) * 0xffff));
    out[p++] = i === blocks - 1 ? 1 : 0; // BFINAL, BTYPE=00
    out[p++] = chunk.length & 0xff;
    out[p++] = chunk.length >>> 8;
    out[p++] = ~chunk.length & 0xff;
    out[p++] = (~chunk.length >>> 8) & 0xff;
    out.set(chunk, p);
    p += chunk.length;
  }
  const view = new DataView(out.buffer);
  view.setUint32(p, crc32(data), true);
  view.setUint32(p + 4, data.length, true);
  return out;
}

export interface Image {
  /** sha256 of the manifest: the image digest a registry reports, and WasmPlugin.spec.sha256 for an oci:// url. */
  digest: string;
  /** sha256 of the module: WasmPlugin.spec.sha256 for an https:// url. */
  wasmSha256: string;
  manifest: Uint8Array;
  blobs: Map<string, Uint8Array>;
}

/** The image of a module, in memory. */
export function image(wasm: Uint8Array): Image {
  const layerTar = tar(WASM_FILE, wasm);
  const layer = gzipStored(layerTar);
  const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  // A module runs on any architecture; linux/amd64 is what a `docker build` of Dockerfile.wasm on
  // the usual build machine records, and what registries and tools expect to find.
  const config = json({
    architecture: "amd64",
    os: "linux",
    config: {},
    rootfs: { type: "layers", diff_ids: ["sha256:" + sha256(layerTar)] },
  });
  const manifest = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    config: { mediaType: MEDIA_TYPES.config, digest: "sha256:" + sha256(config), size: config.length },
    layers: [{ mediaType: MEDIA_TYPES.layer, digest: "sha256:" + sha256(layer), size: layer.length }],
    annotations: { "module.wasm.image/variant": "compat" },
  });
  const blobs = new Map([config, layer, manifest].map((b) => [sha256(b), b]));
  return { digest: "sha256:" + sha256(manifest), wasmSha256: sha256(wasm), manifest, blobs };
}

/** Writes the image of `wasmPath` as an OCI image layout in `dir` (replaced), tagged `tag`. */
export function writeImageLayout(wasmPath: string, dir: string, tag: string): Image {
  const img = image(readFileSync(wasmPath));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir + "/blobs/sha256", { recursive: true });
  for (const [hex, bytes] of img.blobs) writeFileSync(`${dir}/blobs/sha256/${hex}`, bytes);
  writeFileSync(dir + "/oci-layout", JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    dir + "/index.json",
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: MEDIA_TYPES.manifest,
          digest: img.digest,
          size: img.manifest.length,
          annotations: { "org.opencontainers.image.ref.name": tag },
        },
      ],
    }),
  );
  return img;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const version = JSON.parse(readFileSync(root + "package.json", "utf8")).version as string;
  const tag = process.env.IMAGE_TAG ?? version;
  const dir = process.env.IMAGE_DIR ?? "build/image";
  const img = writeImageLayout(root + "build/asm-llm-proxy.wasm", root + dir, tag);
  const target = process.env.WASM_IMAGE ?? `registry.example.com/mesh/asm-llm-proxy:${tag}`;
  process.stdout.write(
    [
      `OCI image layout: ${dir} (tag ${tag})`,
      `image digest:     ${img.digest}`,
      `  WasmPlugin url oci://${target.replace(/:[^:/]+$/, "")}@${img.digest}, or spec.sha256: ${img.digest.slice(7)} with a tag`,
      `wasm sha256:      ${img.wasmSha256}`,
      `  WasmPlugin spec.sha256 for an https:// url serving build/asm-llm-proxy.wasm`,
      `push: skopeo copy oci:${dir}:${tag} docker://${target}`,
      "",
    ].join("\n"),
  );
}
