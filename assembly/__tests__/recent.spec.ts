// SPDX-License-Identifier: Apache-2.0
// The bounded memory of counted response ids.

import { RecentIds } from "../llm/recent";

describe("RecentIds", () => {
  it("knows an id it saw and forgets the oldest past its capacity", () => {
    const r = new RecentIds(2);
    expect(r.seenBefore("a")).toBe(false);
    expect(r.seenBefore("a")).toBe(true);
    expect(r.seenBefore("b")).toBe(false);
    expect(r.seenBefore("c")).toBe(false); // "a" forgotten
    expect(r.seenBefore("b")).toBe(true);
    expect(r.seenBefore("a")).toBe(false); // "b" forgotten
    expect(r.seenBefore("c")).toBe(true);
    expect(r.seenBefore("b")).toBe(false);
  });
});
