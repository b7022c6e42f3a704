import { compressFull } from '/work/main/out/main/engine/codec.js';
import fs from 'node:fs';
const b = fs.readFileSync(process.argv[2]);
for (const l of process.argv.slice(3).map(Number)) { const t=Date.now(); const p = compressFull(b,l); console.log('full level',l,p.length, Date.now()-t,'ms'); }
