// Expiry durations: the units, calendar months and years, and the refusals (zero, "m", unknown roles).

import assert from "node:assert/strict";
import { test } from "node:test";
import { checkDuration, DEFAULT_EXPIRIES, expiryFrom, withOverrides } from "../../src/repo/expiry.ts";

test("durations from a fixed time, in TUF's date format", () => {
  const now = new Date("2026-01-31T12:00:00.750Z");
  assert.equal(expiryFrom("90s", now), "2026-01-31T12:01:30Z");
  assert.equal(expiryFrom("30min", now), "2026-01-31T12:30:00Z");
  assert.equal(expiryFrom("12h", now), "2026-02-01T00:00:00Z");
  assert.equal(expiryFrom("1d", now), "2026-02-01T12:00:00Z");
  assert.equal(expiryFrom("1w", now), "2026-02-07T12:00:00Z");
  assert.equal(expiryFrom("3mo", now), "2026-05-01T12:00:00Z"); // Jan 31 + 3 months rolls over as Date does
  assert.equal(expiryFrom("1y", new Date("2024-02-29T00:00:00Z")), "2025-03-01T00:00:00Z");
});

test("bad durations and overrides are usage errors", () => {
  for (const d of ["3m", "0d", "1", "d", "-1d", "1.5d", "1 d", "9999999d"])
    assert.throws(() => checkDuration(d), { name: "UsageError" }, d);
  assert.deepEqual(withOverrides(DEFAULT_EXPIRIES, ["timestamp=2h,snapshot=2d"]), {
    ...DEFAULT_EXPIRIES,
    timestamp: "2h",
    snapshot: "2d",
  });
  for (const o of ["admin=1d", "timestamp", "timestamp=", "=1d", "timestamp=1m"])
    assert.throws(() => withOverrides(DEFAULT_EXPIRIES, [o]), { name: "UsageError" }, o);
});
