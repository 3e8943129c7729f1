import { describe, expect, it } from "vitest";

import { isWhole, pan, selection, stepRequest, zoom } from "../src/lib/range";

const bounds = { min: 0, max: 1000 };

describe("stepRequest", () => {
  it("asks for the whole run without bounds, at one point per pixel", () => {
    expect(stepRequest(null, bounds, 812.4)).toEqual({ maxPoints: 812 });
    expect(stepRequest({ min: 0, max: 1000 }, bounds, 640)).toEqual({ maxPoints: 640 });
  });

  it("asks for a zoomed view's whole steps", () => {
    expect(stepRequest({ min: 100.4, max: 200.6 }, bounds, 500)).toEqual({ startStep: 100, endStep: 201, maxPoints: 500 });
  });

  it("keeps max_points within what the API accepts", () => {
    expect(stepRequest(null, bounds, 0).maxPoints).toBe(2);
    expect(stepRequest(null, bounds, 1e7).maxPoints).toBe(100_000);
    expect(stepRequest({ min: -5, max: 10 }, bounds, 300)).toEqual({ startStep: 0, endStep: 10, maxPoints: 300 });
  });
});

describe("zoom", () => {
  it("halves around the middle, or around the cursor", () => {
    expect(zoom({ min: 0, max: 1000 }, bounds, 0.5)).toEqual({ min: 250, max: 750 });
    expect(zoom({ min: 0, max: 1000 }, bounds, 0.5, 0)).toEqual({ min: 0, max: 500 });
    expect(zoom({ min: 0, max: 1000 }, bounds, 0.5, 1)).toEqual({ min: 500, max: 1000 });
  });

  it("never goes past the run, nor narrower than a few steps", () => {
    // 200 steps × 4 around 900 would end at 1300: moved back inside.
    expect(zoom({ min: 800, max: 1000 }, bounds, 4)).toEqual({ min: 200, max: 1000 });
    expect(zoom({ min: 0, max: 1000 }, bounds, 10)).toEqual({ min: 0, max: 1000 });
    const tiny = zoom({ min: 500, max: 510 }, bounds, 0.01);
    expect(tiny.max - tiny.min).toBe(4);
    expect(zoom({ min: 0, max: 2 }, { min: 0, max: 2 }, 0.1)).toEqual({ min: 0, max: 2 });
  });
});

describe("pan", () => {
  it("moves by a fraction of the view and stops at the run's ends", () => {
    expect(pan({ min: 200, max: 400 }, bounds, 0.5)).toEqual({ min: 300, max: 500 });
    expect(pan({ min: 200, max: 400 }, bounds, -2)).toEqual({ min: 0, max: 200 });
    expect(pan({ min: 800, max: 1000 }, bounds, 1)).toEqual({ min: 800, max: 1000 });
  });
});

describe("selection and isWhole", () => {
  it("orders a dragged range and widens a click to a few steps", () => {
    expect(selection(300, 100, bounds)).toEqual({ min: 100, max: 300 });
    expect(selection(500, 500, bounds)).toEqual({ min: 498, max: 502 });
    expect(selection(-50, 20, bounds)).toEqual({ min: 0, max: 70 });
  });

  it("knows a view that shows everything", () => {
    expect(isWhole(null, bounds)).toBe(true);
    expect(isWhole({ min: 0, max: 1000 }, bounds)).toBe(true);
    expect(isWhole({ min: 1, max: 1000 }, bounds)).toBe(false);
    expect(isWhole({ min: 1, max: 2 }, null)).toBe(true);
  });
});
