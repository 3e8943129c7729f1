import { describe, expect, it } from "vitest";

import { alignSeries, emptySeries, finalAndBest, mergePoints, modeFor, seriesOf } from "../src/lib/series";

describe("mergePoints", () => {
  it("appends live points past the end", () => {
    const s = seriesOf([1, 2], [0.9, 0.8]);
    expect(mergePoints(s, [[3, 0.7], [4, 0.6]])).toEqual({ x: [1, 2, 3, 4], y: [0.9, 0.8, 0.7, 0.6] });
  });

  it("never draws an epoch twice: history and a replaying stream overlap", () => {
    const history = seriesOf([1, 2, 3], [0.9, 0.8, 0.7]);
    // The SSE stream replays from the first epoch, then goes on.
    const merged = mergePoints(history, [[1, 0.9], [2, 0.8], [3, 0.7], [4, 0.6]]);
    expect(merged).toEqual({ x: [1, 2, 3, 4], y: [0.9, 0.8, 0.7, 0.6] });
  });

  it("returns the same series when nothing is new, so the chart can skip a redraw", () => {
    const s = seriesOf([1, 2], [0.5, null]);
    expect(mergePoints(s, [[1, 0.5], [2, null]])).toBe(s);
    expect(mergePoints(s, [])).toBe(s);
    const nan = seriesOf([1], [Number.NaN]);
    expect(mergePoints(nan, [[1, Number.NaN]])).toBe(nan);
  });

  it("puts a late point in order and lets a newer value win", () => {
    const s = seriesOf([1, 3], [0.9, 0.7]);
    expect(mergePoints(s, [[2, 0.8]])).toEqual({ x: [1, 2, 3], y: [0.9, 0.8, 0.7] });
    // A resumed run writes epoch 3 again.
    expect(mergePoints(s, [[3, 0.65]])).toEqual({ x: [1, 3], y: [0.9, 0.65] });
  });

  it("sorts and dedupes unordered input", () => {
    expect(seriesOf([3, 1, 2, 1], [30, 10, 20, 11])).toEqual({ x: [1, 2, 3], y: [11, 20, 30] });
    expect(mergePoints(emptySeries(), [[Number.NaN, 1], [2, 2], [1, 1]])).toEqual({ x: [1, 2], y: [1, 2] });
  });

  it("does not change its input", () => {
    const s = seriesOf([1, 2], [1, 2]);
    mergePoints(s, [[3, 3]]);
    mergePoints(s, [[0, 0]]);
    expect(s).toEqual({ x: [1, 2], y: [1, 2] });
  });
});

describe("alignSeries", () => {
  it("puts series on the union of their x, null where one has no point", () => {
    const train = seriesOf([1, 2, 3], [0.9, 0.8, 0.7]);
    const val = seriesOf([2, 3], [0.85, 0.75]);
    expect(alignSeries([train, val])).toEqual([
      [1, 2, 3],
      [0.9, 0.8, 0.7],
      [null, 0.85, 0.75],
    ]);
    expect(alignSeries([])).toEqual([[]]);
  });
});

describe("finalAndBest and modeFor", () => {
  it("finds the last and the best value, skipping gaps", () => {
    const s = seriesOf([1, 2, 3, 4], [0.9, 0.5, null, 0.6]);
    expect(finalAndBest(s, "min")).toEqual({ final: 0.6, best: 0.5, bestAt: 2 });
    expect(finalAndBest(s, "max")).toEqual({ final: 0.6, best: 0.9, bestAt: 1 });
    expect(finalAndBest(emptySeries(), "min")).toEqual({ final: null, best: null, bestAt: null });
  });

  it("takes lower as better for losses only", () => {
    expect(modeFor("val_loss")).toBe("min");
    expect(modeFor("train_loss")).toBe("min");
    expect(modeFor("val_dice")).toBe("max");
    expect(modeFor("val_accuracy")).toBe("max");
  });
});
