#!/usr/bin/env node
// Draws Bulwark's icons (a shield with a check mark) procedurally and writes them into assets/:
//   icon.png (512)               app icon (Linux, macOS; electron-builder converts it as needed)
//   icon.ico (16, 32, 64, 256)   Windows app icon: an ICO container holding PNGs
// and, for each tray state (idle, updating, failed), a shield with a small badge saying the state
// (green check, amber down arrow, red exclamation mark):
//   tray-<state>-16.png, tray-<state>-32.png
//                                Linux tray: coloured PNGs (1x and 2x representations)
//   tray-<state>.ico (16, 24, 32, 48)
//                                Windows notification area: an ICO, so every DPI gets a crisp size
//   tray-<state>Template.png (16), tray-<state>Template@2x.png (32)
//                                macOS menu-bar template: black on transparent, the system tints it;
//                                idle is the plain shield with its check cut out, the other states
//                                carry a black badge with the glyph cut out
// src-main/electron/tray-icons.ts picks the file per platform and state; keep the names in step.
// Only Node built-ins, so the icons can be regenerated anywhere: `node scripts/make-icons.js`.
// The output is deterministic; re-running it changes no bytes.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

const ASSETS_DIR = path.join(import.meta.dirname, '..', 'assets');

// ---- Geometry, in unit coordinates (0..1, y down) ----

const SHIELD = { halfWidth: 0.38, top: 0.08, dip: 0.05, shoulder: 0.52, tip: 0.94 };

/** Inside a shield centred at x = 0.5, scaled by `scale` about the shield's middle. */
function inShield(x, y, scale = 1) {
  const cx = 0.5;
  const cy = (SHIELD.top + SHIELD.tip) / 2;
  const sx = cx + (x - cx) / scale;
  const sy = cy + (y - cy) / scale;
  const across = (sx - cx) / SHIELD.halfWidth;
  if (Math.abs(across) > 1) return false;
  // The top edge dips slightly towards the middle; the sides run straight down to the shoulder and
  // then curve in to a point (1 - t² keeps the curve smooth at the shoulder and pointed at the tip).
  if (sy < SHIELD.top + SHIELD.dip * (1 - across * across)) return false;
  if (sy <= SHIELD.shoulder) return true;
  const t = (sy - SHIELD.shoulder) / (SHIELD.tip - SHIELD.shoulder);
  return t <= 1 && Math.abs(across) <= 1 - t * t;
}

const CHECK = [
  [0.33, 0.5],
  [0.46, 0.63],
  [0.68, 0.37],
];

function distanceToSegment(x, y, [ax, ay], [bx, by]) {
  const dx = bx - ax;
  const dy = by - ay;
  const t = Math.max(0, Math.min(1, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(x - (ax + t * dx), y - (ay + t * dy));
}

/** On the check mark's stroke; small icons get a thicker stroke so it survives at 16 px. */
function inCheck(x, y, halfThickness) {
  return distanceToSegment(x, y, CHECK[0], CHECK[1]) <= halfThickness || distanceToSegment(x, y, CHECK[1], CHECK[2]) <= halfThickness;
}

// ---- Styles: each maps a unit-coordinate point to [r, g, b, a] (0..255) ----

const RIM = [23, 50, 95];
const FILL_TOP = [59, 130, 246];
const FILL_BOTTOM = [30, 64, 175];
const WHITE = [255, 255, 255];
const CLEAR = [0, 0, 0, 0];

function mix(from, to, t) {
  return from.map((c, i) => Math.round(c + (to[i] - c) * t));
}

/** Full-colour icon: a dark rim (large sizes only), a blue gradient face, a white check. */
function colourShield(detailed) {
  return (x, y) => {
    if (!inShield(x, y)) return CLEAR;
    if (inCheck(x, y, detailed ? 0.045 : 0.07)) return [...WHITE, 255];
    if (detailed && !inShield(x, y, 0.9)) return [...RIM, 255];
    return [...mix(FILL_TOP, FILL_BOTTOM, (y - SHIELD.top) / (SHIELD.tip - SHIELD.top)), 255];
  };
}

/** macOS template: the shape is carried by alpha alone, the check cut out of the shield. */
function templateShield(x, y) {
  return inShield(x, y) && !inCheck(x, y, 0.07) ? [0, 0, 0, 255] : CLEAR;
}

// ---- Tray badges: a disc at the shield's lower right, set off from it by a transparent ring ----

const BADGE = { cx: 0.73, cy: 0.73, r: 0.26, gap: 0.075 };
const TRAY_STATES = ['idle', 'updating', 'failed'];
const BADGE_COLOUR = { idle: [22, 163, 74], updating: [217, 119, 6], failed: [220, 38, 38] };

function inBadge(x, y, extra = 0) {
  return Math.hypot(x - BADGE.cx, y - BADGE.cy) <= BADGE.r + extra;
}

/** Badge-local point (u, v in -1..1 across the disc) for drawing its glyph. */
function badgeLocal(x, y) {
  return [(x - BADGE.cx) / BADGE.r, (y - BADGE.cy) / BADGE.r];
}

/** The badge's glyph: a check (idle), a down arrow (updating), an exclamation mark (failed). */
function inGlyph(state, x, y) {
  const [u, v] = badgeLocal(x, y);
  const stroke = 0.2;
  switch (state) {
    case 'idle':
      return distanceToSegment(u, v, [-0.5, 0.02], [-0.15, 0.38]) <= stroke || distanceToSegment(u, v, [-0.15, 0.38], [0.5, -0.32]) <= stroke;
    case 'updating':
      return (
        distanceToSegment(u, v, [0, -0.55], [0, 0.45]) <= stroke ||
        distanceToSegment(u, v, [-0.42, 0.05], [0, 0.47]) <= stroke ||
        distanceToSegment(u, v, [0.42, 0.05], [0, 0.47]) <= stroke
      );
    case 'failed':
      return distanceToSegment(u, v, [0, -0.58], [0, 0.12]) <= stroke || Math.hypot(u, v - 0.5) <= stroke + 0.03;
    default:
      throw new Error(`unknown tray state ${state}`);
  }
}

/** Coloured tray icon: the blue shield (no check: the badge carries the state) with a coloured badge. */
function colourTray(state) {
  const shield = colourShield(false);
  return (x, y) => {
    if (inBadge(x, y)) return inGlyph(state, x, y) ? [...WHITE, 255] : [...BADGE_COLOUR[state], 255];
    if (inBadge(x, y, BADGE.gap)) return CLEAR;
    if (!inShield(x, y)) return CLEAR;
    return [...mix(FILL_TOP, FILL_BOTTOM, (y - SHIELD.top) / (SHIELD.tip - SHIELD.top)), 255];
  };
}

/** macOS template per state: idle is the plain template shield; the others add a cut-out badge. */
function templateTray(state) {
  if (state === 'idle') return templateShield;
  return (x, y) => {
    if (inBadge(x, y)) return inGlyph(state, x, y) ? CLEAR : [0, 0, 0, 255];
    if (inBadge(x, y, BADGE.gap)) return CLEAR;
    return inShield(x, y) ? [0, 0, 0, 255] : CLEAR;
  };
}

// ---- Rasterising (supersampled for smooth edges) ----

function render(size, style, samples = 8) {
  const rgba = Buffer.alloc(size * size * 4);
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      // Average premultiplied colour over a samples × samples grid inside the pixel.
      let r = 0, g = 0, b = 0, a = 0;
      for (let sy = 0; sy < samples; sy++) {
        for (let sx = 0; sx < samples; sx++) {
          const [cr, cg, cb, ca] = style((px + (sx + 0.5) / samples) / size, (py + (sy + 0.5) / samples) / size);
          r += cr * ca;
          g += cg * ca;
          b += cb * ca;
          a += ca;
        }
      }
      const offset = (py * size + px) * 4;
      if (a > 0) {
        rgba[offset] = Math.round(r / a);
        rgba[offset + 1] = Math.round(g / a);
        rgba[offset + 2] = Math.round(b / a);
      }
      rgba[offset + 3] = Math.round(a / (samples * samples));
    }
  }
  return rgba;
}

// ---- PNG and ICO encoding ----

function pngChunk(type, data) {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** An 8-bit RGBA PNG, every scanline with filter 0 (none). */
function encodePng(size, rgba) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bit depth
  header[9] = 6; // colour type: RGBA
  // compression, filter and interlace methods stay 0
  const stride = size * 4;
  const scanlines = Buffer.alloc((stride + 1) * size);
  for (let row = 0; row < size; row++) rgba.copy(scanlines, row * (stride + 1) + 1, row * stride, (row + 1) * stride);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', zlib.deflateSync(scanlines, { level: 9 })),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** An ICO whose images are PNGs (supported since Windows Vista). */
function encodeIco(images) {
  const directory = Buffer.alloc(6 + 16 * images.length);
  directory.writeUInt16LE(0, 0); // reserved
  directory.writeUInt16LE(1, 2); // type: icon
  directory.writeUInt16LE(images.length, 4);
  let offset = directory.length;
  images.forEach(({ size, png }, index) => {
    const entry = 6 + 16 * index;
    directory[entry] = size >= 256 ? 0 : size; // 0 means 256
    directory[entry + 1] = size >= 256 ? 0 : size;
    directory.writeUInt16LE(1, entry + 4); // colour planes
    directory.writeUInt16LE(32, entry + 6); // bits per pixel
    directory.writeUInt32LE(png.length, entry + 8);
    directory.writeUInt32LE(offset, entry + 12);
    offset += png.length;
  });
  return Buffer.concat([directory, ...images.map(({ png }) => png)]);
}

// ---- Output ----

const appIcon = (size) => encodePng(size, render(size, colourShield(size >= 64), size >= 256 ? 4 : 8));

const outputs = {
  'icon.png': appIcon(512),
  'icon.ico': encodeIco([16, 32, 64, 256].map((size) => ({ size, png: appIcon(size) }))),
};
for (const state of TRAY_STATES) {
  const tray = (size) => encodePng(size, render(size, colourTray(state)));
  outputs[`tray-${state}-16.png`] = tray(16);
  outputs[`tray-${state}-32.png`] = tray(32);
  outputs[`tray-${state}.ico`] = encodeIco([16, 24, 32, 48].map((size) => ({ size, png: tray(size) })));
  outputs[`tray-${state}Template.png`] = encodePng(16, render(16, templateTray(state)));
  outputs[`tray-${state}Template@2x.png`] = encodePng(32, render(32, templateTray(state)));
}

fs.mkdirSync(ASSETS_DIR, { recursive: true });
for (const [name, bytes] of Object.entries(outputs)) {
  fs.writeFileSync(path.join(ASSETS_DIR, name), bytes);
  console.log(`${path.relative(process.cwd(), path.join(ASSETS_DIR, name))} (${bytes.length} bytes)`);
}
