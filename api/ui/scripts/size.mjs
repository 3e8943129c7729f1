// The bundle's weight as a browser downloads it: every JS and CSS asset gzipped. Fails the
// build over the budget (150 KB) so it cannot creep up unnoticed.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const BUDGET = 150 * 1024;
const assets = fileURLToPath(new URL("../../pivot_api/ui_dist/assets/", import.meta.url));
let total = 0;
for (const name of readdirSync(assets).sort()) {
  if (!/\.(js|css)$/.test(name)) continue;
  const gz = gzipSync(readFileSync(join(assets, name)), { level: 9 }).length;
  total += gz;
  console.log(`  ${name.padEnd(40)} ${(gz / 1024).toFixed(1).padStart(7)} KB gzipped`);
}
console.log(`ui bundle: JS + CSS ${(total / 1024).toFixed(1)} KB gzipped (budget ${BUDGET / 1024} KB)`);
if (total > BUDGET) {
  console.error("ui bundle is over budget");
  process.exit(1);
}
