// SPDX-License-Identifier: Apache-2.0
// CRC-32 (IEEE 802.3, the polynomial of zlib and of Amazon's event stream), table-driven and
// incremental: crc32Update(crc32Update(CRC32_INIT, a), b) then crc32Final is the CRC of a + b.
// Pure: no host imports.

const TABLE = new StaticArray<u32>(256);
for (let n: u32 = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  unchecked((TABLE[n] = c));
}

export const CRC32_INIT: u32 = 0xffffffff;

export function crc32Update(crc: u32, ptr: usize, len: usize): u32 {
  let c = crc;
  const end = ptr + len;
  for (let p = ptr; p < end; p++) c = unchecked(TABLE[(c ^ (<u32>load<u8>(p))) & 0xff]) ^ (c >>> 8);
  return c;
}

export function crc32Final(crc: u32): u32 {
  return crc ^ 0xffffffff;
}
