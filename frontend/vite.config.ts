/// <reference types="vitest/config" />
// The editor (studio), the full chat page and the embeddable widget are three entries of one
// build. Django finds their hashed file names in dist/.vite/manifest.json (frontend/assets.py).
// JSX is compiled by esbuild directly: the React plugin adds only fast refresh, which the
// production bundle does not use.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/static/",
  esbuild: { jsx: "automatic" },
  resolve: {
    alias: {
      // @rjsf/core's test helper imports the ajv validator; our forms use their own
      // (src/studio/workflows/formValidator.ts: ajv needs eval, which the CSP forbids), so
      // ajv is not bundled at all.
      "@rjsf/validator-ajv8": "/src/studio/workflows/formValidator.ts",
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    manifest: true,
    sourcemap: false,
    rollupOptions: {
      input: {
        studio: "src/studio/main.tsx",
        chat: "src/chat/page.tsx",
        widget: "src/chat/widget.tsx",
      },
    },
  },
  test: {
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
    environment: "node",
  },
});
