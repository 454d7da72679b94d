// SPDX-License-Identifier: Apache-2.0
// The series table: a key of dimension values finds its own series and no other one.

import { SeriesTable, SERIES_SLOTS } from "../telemetry/series";

function key(t: SeriesTable, a: string, b: string): void {
  t.begin();
  t.part(a);
  t.part(b);
}

describe("SeriesTable", () => {
  it("finds a series by its values, with its ids undefined until set", () => {
    const t = new SeriesTable();
    key(t, "dashscope.aliyuncs.com", "qwen-turbo");
    expect(t.find()).toBe(-1);
    const s = t.add();
    expect(s).toBe(0);
    for (let i = 0; i < SERIES_SLOTS; i++) expect(t.id(s, i)).toBe(-1);
    t.setId(s, 3, 44);
    key(t, "dashscope.aliyuncs.com", "qwen-turbo");
    expect(t.find()).toBe(0);
    expect(t.id(0, 3)).toBe(44);
    expect(t.id(0, 2)).toBe(-1);
  });
  it("keeps the boundary between values", () => {
    const t = new SeriesTable();
    key(t, "ab", "c");
    t.add();
    key(t, "a", "bc");
    expect(t.find()).toBe(-1);
    key(t, "ab", "c");
    expect(t.find()).toBe(0);
  });
  it("tells thousands of series apart, non-ASCII values too", () => {
    const t = new SeriesTable();
    for (let i = 0; i < 3000; i++) {
      key(t, "host", "模型-" + i.toString());
      expect(t.find()).toBe(-1);
      const s = t.add();
      t.setId(s, i % SERIES_SLOTS, <u32>i);
    }
    expect(t.size).toBe(3000);
    for (let i = 0; i < 3000; i++) {
      key(t, "host", "模型-" + i.toString());
      const s = t.find();
      expect(s).toBe(i);
      expect(t.id(s, i % SERIES_SLOTS)).toBe(i);
    }
  });
  it("keeps keys longer than an arena chunk, and finds them again after a clear", () => {
    const t = new SeriesTable();
    const long = "m".repeat(3000);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 200; i++) {
        key(t, i % 50 == 7 ? long + i.toString() : "host", "model-" + i.toString());
        expect(t.find()).toBe(-1);
        t.setId(t.add(), 1, <u32>(i + round));
      }
      for (let i = 0; i < 200; i++) {
        key(t, i % 50 == 7 ? long + i.toString() : "host", "model-" + i.toString());
        const s = t.find();
        expect(s).toBe(i);
        expect(t.id(s, 1)).toBe(i + round);
      }
      t.clear();
    }
  });
  it("forgets everything on clear", () => {
    const t = new SeriesTable();
    key(t, "h", "m");
    t.setId(t.add(), 0, 7);
    t.clear();
    expect(t.size).toBe(0);
    key(t, "h", "m");
    expect(t.find()).toBe(-1);
    expect(t.id(t.add(), 0)).toBe(-1);
  });
});
