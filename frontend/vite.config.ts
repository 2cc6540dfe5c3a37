/// <reference types="vitest/config" />
import { defineConfig, loadEnv } from "vite";
import react from "@vitejs/plugin-react";

// floe-api listens on 127.0.0.1:8080 (FLOE_API_URL overrides it). In
// development Vite proxies the API and the WebSocket to it, so the session
// cookie is same-origin exactly as in production, where floe-api serves dist/.
export default defineConfig(({ mode }) => {
  const api = loadEnv(mode, ".", "").FLOE_API_URL || "http://127.0.0.1:8080";
  const proxy = {
    "/api": { target: api },
    "/ws": { target: api, ws: true },
  };
  return {
    base: "/",
    plugins: [react()],
    server: { proxy },
    preview: { proxy },
    build: {
      outDir: "dist",
      emptyOutDir: true,
      sourcemap: true,
      chunkSizeWarningLimit: 1500,
    },
    test: {
      environment: "node",
      include: ["src/**/*.test.ts"],
    },
  };
});
