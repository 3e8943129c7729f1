import { describe, expect, it } from "vitest";

import {
  formatAbsolute,
  formatBytes,
  formatDuration,
  formatNumber,
  formatPercent,
  formatRelative,
  durationTick,
  relativeTick,
  shortHash,
} from "../src/lib/format";

describe("formatNumber", () => {
  it("keeps four significant digits and switches to exponents at the extremes", () => {
    expect(formatNumber(0.123456)).toBe("0.1235");
    expect(formatNumber(12.3456)).toBe("12.35");
    expect(formatNumber(1234.5678)).toBe("1,235");
    expect(formatNumber(42)).toBe("42");
    expect(formatNumber(120000)).toBe("120,000");
    expect(formatNumber(0.000123)).toBe("1.23e-4");
    expect(formatNumber(12_345_678)).toBe("1.23e7");
    expect(formatNumber(0)).toBe("0");
    expect(formatNumber(-0.5)).toBe("-0.5");
  });

  it("shows a dash for nothing and signs for infinities", () => {
    expect(formatNumber(null)).toBe("—");
    expect(formatNumber(undefined)).toBe("—");
    expect(formatNumber(Number.NaN)).toBe("—");
    expect(formatNumber(Infinity)).toBe("∞");
    expect(formatNumber(-Infinity)).toBe("−∞");
  });
});

describe("formatPercent and formatBytes", () => {
  it("rounds a fraction to a whole percent", () => {
    expect(formatPercent(0.256)).toBe("26%");
    expect(formatPercent(1)).toBe("100%");
    expect(formatPercent(null)).toBe("—");
  });

  it("uses decimal units with about three digits", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(154_973)).toBe("155 KB");
    expect(formatBytes(2_450_000)).toBe("2.45 MB");
    expect(formatBytes(245_300_000)).toBe("245 MB");
    expect(formatBytes(-1)).toBe("—");
  });
});

describe("formatDuration", () => {
  it("reads as the two largest units", () => {
    expect(formatDuration(0)).toBe("0s");
    expect(formatDuration(45_900)).toBe("45s");
    expect(formatDuration(185_000)).toBe("3m 05s");
    expect(formatDuration(2 * 3_600_000 + 4 * 60_000)).toBe("2h 04m");
    expect(formatDuration(3 * 86_400_000 + 4 * 3_600_000)).toBe("3d 4h");
    expect(formatDuration(null)).toBe("—");
    expect(formatDuration(-5)).toBe("—");
  });
});

describe("formatRelative and formatAbsolute", () => {
  const now = Date.parse("2025-12-19T12:00:00Z");
  it("says how long ago, or how soon", () => {
    expect(formatRelative("2025-12-19T11:59:58Z", now)).toBe("just now");
    expect(formatRelative("2025-12-19T11:59:30Z", now)).toBe("30s ago");
    expect(formatRelative("2025-12-19T11:55:00Z", now)).toBe("5 min ago");
    expect(formatRelative("2025-12-19T09:00:00Z", now)).toBe("3 h ago");
    expect(formatRelative("2025-12-17T12:00:00Z", now)).toBe("2 d ago");
    expect(formatRelative("2025-12-19T12:10:00Z", now)).toBe("in 10 min");
    expect(formatRelative(null, now)).toBe("—");
    expect(formatRelative("not a date", now)).toBe("—");
  });

  it("gives an old date as a date, and the local time in full", () => {
    const iso = "2025-10-01T08:30:05Z";
    const d = new Date(iso);
    const pad = (n: number) => String(n).padStart(2, "0");
    const local = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    expect(formatAbsolute(iso)).toBe(local);
    expect(formatRelative(iso, now)).toBe(local.slice(0, 10));
  });
});

describe("shortHash", () => {
  it("keeps the head and tail of a long hash", () => {
    expect(shortHash("0458964e25841065606eee76dff34b4be045ed46be9c86887f88c7c3943683d7")).toBe("0458964e…83d7");
    expect(shortHash("abc")).toBe("abc");
  });
});

describe("clock ticks", () => {
  // A tick may lag a text by at most a sixth of the unit the text shows: a page re-renders a
  // running session's duration every second only while it shows seconds.
  const units = (text: string) => (/\d+s$/.test(text) ? 1000 : /\d+m$/.test(text) ? 60_000 : 3_600_000);

  it("durations tick as often as their text shows", () => {
    for (let ms = 0; ms < 3 * 86_400_000; ms += 7_919) {
      const text = formatDuration(ms);
      const unit = units(text);
      expect(durationTick(ms)).toBeLessThanOrEqual(unit / 6 > 1000 ? unit / 6 : 1000);
      // and no more often than needed: the text does not change within the tick
      if (durationTick(ms) > 1000) expect(formatDuration(ms - (ms % unit))).toBe(text);
    }
    expect(durationTick(null)).toBe(1000);
  });

  it("relative times tick as often as their text shows", () => {
    const t = Date.parse("2026-01-01T00:00:00Z");
    for (let age = 0; age < 2 * 86_400_000; age += 6_133) {
      const text = formatRelative(new Date(t).toISOString(), t + age);
      const tick = relativeTick(age);
      if (/\ds ago$|just now/.test(text)) expect(tick).toBe(1000);
      else if (/min ago$/.test(text)) expect(tick).toBeLessThanOrEqual(30_000);
      else expect(tick).toBeLessThanOrEqual(300_000);
    }
    expect(relativeTick(-90_000)).toBe(30_000); // "in 1 min": the future ticks alike
  });
});
