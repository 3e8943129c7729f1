// Built into the API's static files (api/pivot_api/ui_dist), served at /ui/. The dev server
// proxies /api to a running platform: PIVOT_URL (default http://127.0.0.1:8000).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  base: "/ui/",
  root: here("."),
  resolve: {
    // The dashboard talks to the API only through the project's TypeScript client, from
    // source, so the bundle carries exactly the client the repo tests.
    alias: { "@pivot/client": here("../clients/typescript/src/index.ts") },
  },
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: here("../pivot_api/ui_dist"),
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    sourcemap: false,
  },
  server: {
    proxy: { "/api": { target: process.env.PIVOT_URL ?? "http://127.0.0.1:8000", changeOrigin: false } },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
