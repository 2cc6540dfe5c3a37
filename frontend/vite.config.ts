/// <reference types="vitest/config" />
import { defineConfig, loadEnv, type Connect, type Plugin } from "vite";
import react from "@vitejs/plugin-react";

// Two pages: the chat (index.html, at /) and the workflow inspector
// (inspect.html, at /inspect and every path under it).
const page = (file: string) => decodeURIComponent(new URL(file, import.meta.url).pathname);

// floe-api answers /inspect and /inspect/* with inspect.html; the dev and
// preview servers do the same, so the inspector's client-side routes reload.
function inspectorPages(): Plugin {
  const rewrite: Connect.NextHandleFunction = (incoming, _res, next) => {
    // (No @types/node here: the request is typed by hand.)
    const req = incoming as unknown as { url?: string };
    const url = req.url ?? "";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (path === "/inspect" || path.startsWith("/inspect/")) {
      req.url = `/inspect.html${q < 0 ? "" : url.slice(q)}`;
    }
    next();
  };
  return {
    name: "floe-inspector-pages",
    configureServer(server) {
      server.middlewares.use(rewrite);
    },
    configurePreviewServer(server) {
      server.middlewares.use(rewrite);
    },
  };
}

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
    plugins: [react(), inspectorPages()],
    server: { proxy },
    preview: { proxy },
    build: {
      outDir: "dist",
      emptyOutDir: true,
      sourcemap: true,
      chunkSizeWarningLimit: 1500,
      rollupOptions: {
        input: {
          main: page("./index.html"),
          inspect: page("./inspect.html"),
        },
      },
    },
    test: {
      environment: "node",
      include: ["src/**/*.test.ts"],
    },
  };
});
