import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
const require = createRequire(import.meta.url);
const lz4 = require('lz4js');
const block = randomBytes(65536); block.write('WXYZ', 65536 - 40, 'latin1'); block.write('WXYZ', 65536 - 10, 'latin1');
const dst = Buffer.alloc(70000);
const n = lz4.compressBlock(block, dst, 0, block.length, new Uint32Array(1 << 16));
const b = dst.subarray(0, n); let i = 0, lastMatch = Infinity;
for (;;) { const t = b[i++]; let l = t >> 4; if (l === 15) for (let x = 255; x === 255;) l += x = b[i++]; i += l; if (i === b.length) { console.log('old ok?', l >= 5 && l + lastMatch >= 12, l, lastMatch); break; } i += 2; let m = t & 15; if (m === 15) for (let x = 255; x === 255;) m += x = b[i++]; lastMatch = m + 4; }
