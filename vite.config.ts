// Builds the renderer (src-renderer) into out/renderer, which the Electron shell loads from disk.
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

export default defineConfig({
  root: 'src-renderer',
  // Relative asset URLs: the page is loaded with file:// (and from inside app.asar), not from a server.
  base: './',
  plugins: [svelte()],
  build: {
    outDir: '../out/renderer',
    emptyOutDir: true,
    // Electron 45 runs a current Chromium; no need to down-level.
    target: 'chrome130',
  },
});
