// SPDX-License-Identifier: Apache-2.0
// The only code that calls the host. Every call answers with a value or null/false: a host error
// (NotFound above all, which Envoy returns for any property it does not know) is a normal answer
// here, never a trap. The plugin layer uses these functions; pure modules never import them.

import {
  proxy_log,
  proxy_get_log_level,
  proxy_get_property,
  proxy_set_property,
  proxy_get_header_map_value,
  proxy_get_header_map_pairs,
  proxy_remove_header_map_value,
  proxy_replace_header_map_value,
  proxy_get_buffer_bytes,
  proxy_set_buffer_bytes,
  proxy_define_metric,
  proxy_increment_metric,
  proxy_record_metric,
  proxy_get_current_time_nanoseconds,
  environ_sizes_get,
  environ_get,
  proxy_http_call,
  proxy_continue_stream,
  proxy_send_local_response,
  proxy_set_effective_context,
  WasmResult,
  MetricType,
  STREAM_REQUEST,
} from "./abi";
import { release } from "./memory";

export { LogLevel, BufferType, HeaderMapType, CONTINUE, STOP_ITERATION } from "./abi";

// Out-parameters of host calls: a pointer and a size the host writes.
const OUT_PTR: usize = memory.data(8, 8);
const OUT_SIZE: usize = memory.data(8, 8);

function takeString(result: u32): string | null {
  if (result != WasmResult.Ok) return null;
  const ptr = load<usize>(OUT_PTR);
  const size = load<usize>(OUT_SIZE);
  // An empty value (a route without a name) is the static "", not a new string.
  const value = size == 0 ? "" : String.UTF8.decodeUnsafe(ptr, size);
  release(ptr);
  return value;
}

/**
 * A property (path segments separated by NUL, pre-encoded by the caller), as a string, or null
 * when the host does not have it.
 */
export function getProperty(path: ArrayBuffer): string | null {
  store<usize>(OUT_PTR, 0);
  store<usize>(OUT_SIZE, 0);
  return takeString(proxy_get_property(changetype<usize>(path), path.byteLength, OUT_PTR, OUT_SIZE));
}

/** Scratch space for values handed to the host, so that short ones need no allocation. */
const SCRATCH_SIZE: i32 = 1024;
const SCRATCH: usize = memory.data(SCRATCH_SIZE, 8);

/**
 * Sets a property of the current stream. Envoy stores it in filter state under "wasm." + path,
 * byte for byte, so the path is one dotted string (see ../../../shared/envoy-contract.md §1).
 * The value is encoded into scratch space (UTF-8 needs at most 3 bytes per UTF-16 unit), so a
 * model name or a count costs no allocation.
 */
export function setProperty(path: ArrayBuffer, value: string): bool {
  const units = value.length;
  if (units * 3 <= SCRATCH_SIZE) {
    const n = String.UTF8.encodeUnsafe(changetype<usize>(value), units, SCRATCH);
    return setPropertyBytes(path, SCRATCH, n);
  }
  const bytes = String.UTF8.encode(value);
  return setPropertyBytes(path, changetype<usize>(bytes), <usize>bytes.byteLength);
}

/** Sets a property to `size` bytes at `ptr`. */
export function setPropertyBytes(path: ArrayBuffer, ptr: usize, size: usize): bool {
  return proxy_set_property(changetype<usize>(path), path.byteLength, ptr, size) == WasmResult.Ok;
}

/** Sets a property to the decimal digits of a non-negative count, without allocating. */
export function setPropertyCount(path: ArrayBuffer, value: i64): bool {
  if (value < 0) return setProperty(path, value.toString());
  let n: usize = 0;
  let v = <u64>value;
  do {
    n++;
    v /= 10;
  } while (v != 0);
  v = <u64>value;
  for (let i = n; i > 0; i--) {
    store<u8>(SCRATCH + i - 1, <u8>(0x30 + (v % 10)));
    v /= 10;
  }
  return setPropertyBytes(path, SCRATCH, n);
}

// A header map fetched whole (proxy_get_header_map_pairs), so that reading several headers costs
// one host call: loadHeaders at the start of a headers callback, dropHeaders before it returns.
// It shows the map as it was when loaded; changes the plugin makes go to the host.
let loadedMap: i32 = -1;
let loadedPtr: usize = 0;
let loadedSize: usize = 0;
/** Where the value found by the last findHeader is: in the loaded map or a host copy. */
let valuePtr: usize = 0;
let valueSize: usize = 0;
let valueOwned: bool = false;

/** Fetches a whole header map; reads of that map are then served from it. */
export function loadHeaders(map: i32): void {
  dropHeaders();
  store<usize>(OUT_PTR, 0);
  store<usize>(OUT_SIZE, 0);
  if (proxy_get_header_map_pairs(map, OUT_PTR, OUT_SIZE) != WasmResult.Ok) return;
  loadedPtr = load<usize>(OUT_PTR);
  loadedSize = load<usize>(OUT_SIZE);
  // A map too short for its own count is ignored (reads then go to the host).
  if (loadedPtr == 0 || loadedSize < 4 || <usize>load<u32>(loadedPtr) * 8 + 4 > loadedSize) {
    release(loadedPtr);
    loadedPtr = 0;
    return;
  }
  loadedMap = map;
}

/** Frees the loaded map; call before the headers callback returns. */
export function dropHeaders(): void {
  if (loadedPtr != 0) release(loadedPtr);
  loadedPtr = 0;
  loadedMap = -1;
}

/**
 * Finds a header (its name in lower case, as Envoy keeps them): from the loaded map, else with
 * one host call. On true, the value is at valuePtr/valueSize until releaseValue.
 */
function findHeader(map: i32, name: ArrayBuffer): bool {
  valueOwned = false;
  if (loadedMap == map) {
    // Layout: count, then (key size, value size) per pair, then each key and value NUL-ended.
    const n = <usize>load<u32>(loadedPtr);
    const want = <usize>name.byteLength;
    let p = loadedPtr + 4 + n * 8;
    const end = loadedPtr + loadedSize;
    for (let i: usize = 0; i < n; i++) {
      const k = <usize>load<u32>(loadedPtr + 4 + i * 8);
      const v = <usize>load<u32>(loadedPtr + 8 + i * 8);
      if (p + k + v + 2 > end) return false;
      if (k == want && memory.compare(p, changetype<usize>(name), want) == 0) {
        valuePtr = p + k + 1;
        valueSize = v;
        return true;
      }
      p += k + v + 2;
    }
    return false;
  }
  store<usize>(OUT_PTR, 0);
  store<usize>(OUT_SIZE, 0);
  const r = proxy_get_header_map_value(map, changetype<usize>(name), name.byteLength, OUT_PTR, OUT_SIZE);
  if (r != WasmResult.Ok) return false;
  valuePtr = load<usize>(OUT_PTR);
  valueSize = load<usize>(OUT_SIZE);
  valueOwned = true;
  return true;
}

function releaseValue(): void {
  if (valueOwned) release(valuePtr);
  valueOwned = false;
}

/**
 * Where the first of `paths` the host has is, in plugin memory; false when none. With `skipEmpty`,
 * an empty value counts as absent and the next path is tried.
 */
function loadProperty(paths: ArrayBuffer[], skipEmpty: bool): bool {
  for (let i = 0; i < paths.length; i++) {
    const path = unchecked(paths[i]);
    store<usize>(OUT_PTR, 0);
    store<usize>(OUT_SIZE, 0);
    if (proxy_get_property(changetype<usize>(path), path.byteLength, OUT_PTR, OUT_SIZE) != WasmResult.Ok)
      continue;
    valuePtr = load<usize>(OUT_PTR);
    valueSize = load<usize>(OUT_SIZE);
    valueOwned = true;
    if (valueSize > 0 || !skipEmpty) return true;
    releaseValue();
  }
  return false;
}

/** Whether the loaded value is `text`, compared in place (a string is made only for non-ASCII). */
function valueIs(text: string): bool {
  const n = text.length;
  for (let j = 0; j < n; j++) {
    if (text.charCodeAt(j) >= 0x80) return String.UTF8.decodeUnsafe(valuePtr, valueSize) == text;
  }
  if (valueSize != <usize>n) return false;
  for (let j = 0; j < n; j++) {
    if (<i32>load<u8>(valuePtr + <usize>j) != text.charCodeAt(j)) return false;
  }
  return true;
}

/**
 * Whether the first of `paths` the host has equals `value`, compared in place: 1 equal, 0 not,
 * -1 when the host has none of them (or only empty ones).
 */
export function propertyIs(paths: ArrayBuffer[], value: string): i32 {
  if (!loadProperty(paths, true)) return -1;
  const same = valueIs(value);
  releaseValue();
  return same ? 1 : 0;
}

/**
 * Which of `values` the first of `paths` the host has (an empty value included: a route without
 * a name) equals, compared in place; -1 for none (or when the host has no such property).
 */
export function propertyIndex(paths: ArrayBuffer[], values: string[]): i32 {
  if (!loadProperty(paths, false)) return -1;
  let found = -1;
  for (let i = 0, n = values.length; i < n; i++) {
    if (valueIs(unchecked(values[i]))) {
      found = i;
      break;
    }
  }
  releaseValue();
  return found;
}

/** A header of the given map, or null. Only readable during that map's headers callback. */
export function getHeader(map: i32, name: ArrayBuffer): string | null {
  if (!findHeader(map, name)) return null;
  const value = valueSize == 0 ? "" : String.UTF8.decodeUnsafe(valuePtr, valueSize);
  releaseValue();
  return value;
}

/**
 * Which of two values a header has, compared in place with one lookup: 0 for `a`, 1 for `b`, -1
 * for neither (or no such header).
 */
export function headerChoice(map: i32, name: ArrayBuffer, a: ArrayBuffer, b: ArrayBuffer): i32 {
  if (!findHeader(map, name)) return -1;
  let choice = -1;
  const n = <usize>a.byteLength;
  const m = <usize>b.byteLength;
  if (valueSize == n && memory.compare(valuePtr, changetype<usize>(a), n) == 0) choice = 0;
  else if (valueSize == m && memory.compare(valuePtr, changetype<usize>(b), m) == 0) choice = 1;
  releaseValue();
  return choice;
}

/** Whether a header is present: in the copy of the map loadHeaders made, without a host call. */
export function hasHeader(map: i32, name: ArrayBuffer): bool {
  if (!findHeader(map, name)) return false;
  releaseValue();
  return true;
}

/** Removes a header; only possible during that map's headers callback. */
export function removeHeader(map: i32, name: ArrayBuffer): bool {
  return proxy_remove_header_map_value(map, changetype<usize>(name), name.byteLength) == WasmResult.Ok;
}

/**
 * Sets a header to one value (Envoy's setCopy; the route cache is cleared for request headers);
 * only possible during that map's headers callback.
 */
export function replaceHeader(map: i32, name: ArrayBuffer, value: ArrayBuffer): bool {
  return (
    proxy_replace_header_map_value(
      map,
      changetype<usize>(name),
      name.byteLength,
      changetype<usize>(value),
      value.byteLength,
    ) == WasmResult.Ok
  );
}

/** The VM's environment variables as NAME=value strings; empty when the host has none. */
export function environment(): string[] {
  const out: string[] = [];
  store<usize>(OUT_PTR, 0);
  store<usize>(OUT_SIZE, 0);
  if (environ_sizes_get(OUT_PTR, OUT_SIZE) != 0) return out;
  const count = load<u32>(OUT_PTR);
  const size = load<u32>(OUT_SIZE);
  if (count == 0 || size == 0) return out;
  const pointers = heap.alloc(<usize>count * 4);
  const buf = heap.alloc(<usize>size);
  if (environ_get(pointers, buf) == 0) {
    const end = buf + <usize>size;
    for (let i: u32 = 0; i < count; i++) {
      const start = <usize>load<u32>(pointers + <usize>i * 4);
      // Each entry ends with a NUL; a pointer outside the buffer is ignored rather than read.
      if (start < buf || start >= end) continue;
      let stop = start;
      while (stop < end && load<u8>(stop) != 0) stop++;
      out.push(String.UTF8.decodeUnsafe(start, stop - start));
    }
  }
  heap.free(pointers);
  heap.free(buf);
  return out;
}

/** Length of the bytes returned by the last successful `readBuffer`. */
export let bufferLength: usize = 0;

/**
 * Copies `length` bytes from offset `start` of a host buffer into plugin memory and returns their address (0 when
 * there are none). The caller reads them in place and must `release` the address.
 */
export function readBuffer(type: i32, start: usize, length: usize): usize {
  bufferLength = 0;
  if (length == 0) return 0;
  store<usize>(OUT_PTR, 0);
  store<usize>(OUT_SIZE, 0);
  if (proxy_get_buffer_bytes(type, <u32>start, <u32>length, OUT_PTR, OUT_SIZE) != WasmResult.Ok) return 0;
  bufferLength = load<usize>(OUT_SIZE);
  return load<usize>(OUT_PTR);
}

export { release };

/** Replaces the first `length` bytes of the current chunk of a body with `size` bytes at `ptr`. */
export function replaceBuffer(type: i32, length: usize, ptr: usize, size: usize): bool {
  return proxy_set_buffer_bytes(type, 0, <u32>length, ptr, size) == WasmResult.Ok;
}

/**
 * Appends `size` bytes at `ptr` to the current chunk of a body, whose size is `end` (Envoy's
 * set_buffer_bytes adds the data when start is at or past the end).
 */
export function appendBuffer(type: i32, end: usize, ptr: usize, size: usize): bool {
  return proxy_set_buffer_bytes(type, <u32>end, 0, ptr, size) == WasmResult.Ok;
}

function defineMetric(type: i32, name: string): i64 {
  const bytes = String.UTF8.encode(name);
  store<u32>(OUT_PTR, 0);
  const result = proxy_define_metric(type, changetype<usize>(bytes), bytes.byteLength, OUT_PTR);
  return result == WasmResult.Ok ? <i64>load<u32>(OUT_PTR) : -1;
}

/** Defines a counter; returns its id, or -1 when the host refuses. */
export function defineCounter(name: string): i64 {
  return defineMetric(MetricType.Counter, name);
}

/** Defines a histogram (Envoy's default buckets); returns its id, or -1 when the host refuses. */
export function defineHistogram(name: string): i64 {
  return defineMetric(MetricType.Histogram, name);
}

/** Defines a gauge; returns its id, or -1 when the host refuses. */
export function defineGauge(name: string): i64 {
  return defineMetric(MetricType.Gauge, name);
}

/** Sets a gauge to a value (Envoy's record_metric on a gauge sets it). */
export function setGauge(id: u32, value: u64): bool {
  return proxy_record_metric(id, value) == WasmResult.Ok;
}

/** Records one sample in a histogram. */
export function recordHistogram(id: u32, value: u64): bool {
  return proxy_record_metric(id, value) == WasmResult.Ok;
}

/** The host's clock in nanoseconds, or 0 when it does not answer. */
export function nowNanos(): u64 {
  store<u64>(OUT_PTR, 0);
  if (proxy_get_current_time_nanoseconds(OUT_PTR) != WasmResult.Ok) return 0;
  return load<u64>(OUT_PTR);
}

/** Adds delta to a counter. Envoy refuses a zero delta on counters, so none is sent. */
export function incrementCounter(id: u32, delta: u64): bool {
  if (delta == 0) return true;
  return proxy_increment_metric(id, <i64>delta) == WasmResult.Ok;
}

/** Whether the proxy would print a message at this level; check before building one. */
export function logEnabled(level: u32): bool {
  store<u32>(OUT_PTR, 0);
  if (proxy_get_log_level(OUT_PTR) != WasmResult.Ok) return true;
  return level >= load<u32>(OUT_PTR);
}

export function log(level: u32, message: string): void {
  const bytes = String.UTF8.encode(message);
  proxy_log(level, changetype<usize>(bytes), bytes.byteLength);
}

/**
 * proxy-wasm header pairs: the count, a (name size, value size) pair each, then each name and
 * value NUL-ended. `list` alternates names and values.
 */
function pairs(list: string[]): ArrayBuffer {
  const n = list.length >> 1;
  let size = 4 + n * 8;
  const parts = new Array<ArrayBuffer>(list.length);
  for (let i = 0; i < list.length; i++) {
    const b = String.UTF8.encode(unchecked(list[i]));
    unchecked((parts[i] = b));
    size += b.byteLength + 1;
  }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, <u32>n);
  let p = base + 4 + <usize>n * 8;
  for (let i = 0; i < parts.length; i++) {
    const b = unchecked(parts[i]);
    store<u32>(base + 4 + <usize>(i >> 1) * 8 + <usize>(i & 1) * 4, <u32>b.byteLength);
    memory.copy(p, changetype<usize>(b), b.byteLength);
    p += <usize>b.byteLength + 1;
  }
  return out;
}

/**
 * An HTTP call to an Envoy cluster, made as the root context (Envoy answers on
 * proxy_on_http_call_response whichever context called). `headers` alternates names and values
 * and must hold :method, :path and :authority. Returns the call's token, or 0 when Envoy refuses
 * it (an unknown cluster, a missing header).
 */
export function httpCall(cluster: ArrayBuffer, headers: string[], body: string, timeoutMs: u32): u32 {
  const h = pairs(headers);
  const b = String.UTF8.encode(body);
  store<u32>(OUT_PTR, 0);
  const r = proxy_http_call(
    changetype<usize>(cluster),
    cluster.byteLength,
    changetype<usize>(h),
    h.byteLength,
    changetype<usize>(b),
    b.byteLength,
    0,
    0,
    timeoutMs,
    OUT_PTR,
  );
  return r == WasmResult.Ok ? load<u32>(OUT_PTR) : 0;
}

/** Makes a stream the context of the host calls that follow (in an http call's answer). */
export function setEffectiveContext(id: u32): bool {
  return proxy_set_effective_context(id) == WasmResult.Ok;
}

/** Lets a request that a headers callback stopped go on. */
export function continueRequest(): bool {
  return proxy_continue_stream(STREAM_REQUEST) == WasmResult.Ok;
}

/** Answers the current stream itself; the request goes no further. `headers` alternates names and values. */
export function sendLocalResponse(status: u32, details: string, body: string, headers: string[]): bool {
  const d = String.UTF8.encode(details);
  const b = String.UTF8.encode(body);
  const h = pairs(headers);
  return (
    proxy_send_local_response(
      status,
      changetype<usize>(d),
      d.byteLength,
      changetype<usize>(b),
      b.byteLength,
      changetype<usize>(h),
      h.byteLength,
      -1,
    ) == WasmResult.Ok
  );
}
