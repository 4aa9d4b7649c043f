// The web console's build: `npm run build` writes console/dist, which `berth server` serves.
// Module preload is off so the page carries no inline script (the server's CSP forbids any).

import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  root: new URL(".", import.meta.url).pathname,
  base: "/",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    modulePreload: false,
    chunkSizeWarningLimit: 2048,
    sourcemap: false,
  },
  logLevel: "warn",
});
