// Test photos made in node: a tiny PNG writer (RGBA, no filter) and the two
// pictures the browser test uploads. No image library needed.
import { deflateSync } from 'node:zlib';

const CRC = new Uint32Array(256).map((_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
});
function crc32(buf) {
    let c = 0xffffffff;
    for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'latin1');
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
}

// img: {width, height, data: RGBA bytes} -> PNG file bytes
export function encodePng({ width, height, data }) {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr.set([8, 6, 0, 0, 0], 8);                  // 8-bit RGBA, no interlace
    const raw = Buffer.alloc(height * (1 + 4 * width));
    for (let y = 0; y < height; y++) {
        raw[y * (1 + 4 * width)] = 0;              // filter: none
        Buffer.from(data.buffer, data.byteOffset + 4 * width * y, 4 * width).copy(raw, y * (1 + 4 * width) + 1);
    }
    return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
                          chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

export function makeImage(width, height, pixel) {
    const data = new Uint8ClampedArray(4 * width * height);
    for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
            const [r, g, b] = pixel(x, y);
            data.set([r, g, b, 255], 4 * (y * width + x));
        }
    }
    return { width, height, data };
}

// Sunlit: saturated orange to yellow, with white and deep-red stripes (edges).
export const brightWarm = () => makeImage(160, 120, (x, y) => {
    const band = Math.floor(x / 10) % 4;
    if (band === 1) return [255, 250, 235];
    if (band === 3 && y % 40 < 20) return [200, 30, 20];
    return [255, Math.round(140 + 80 * (y / 119)), Math.round(30 + 30 * (x / 159))];
});

// Night: dark navy to slate blue, a smooth gradient (low contrast, no edges).
export const darkCool = () => makeImage(160, 120, (x, y) => [
    Math.round(12 + 10 * (x / 159)), Math.round(22 + 16 * (y / 119)), Math.round(60 + 30 * (x / 159)),
]);
