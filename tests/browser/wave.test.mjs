// Unit tests of html/wave.js's parseWav (no browser): a stereo model's
// 16-bit stereo WAV gives its channel count, frame count and the mean of the
// channels (what the page draws), as a mono one gives its samples.
import { parseWav } from '../../html/wave.js';

let passed = 0, failed = 0;
function check(name, ok, detail = '') {
    if (ok) { passed++; console.log(`ok   - ${name}`); }
    else { failed++; console.log(`FAIL - ${name}${detail ? `: ${detail}` : ''}`); }
}

// A 16-bit PCM WAV of frames[i][ch] (integers), at 32 kHz.
function wav16(frames, channels) {
    const data = frames.length * channels * 2, buf = new ArrayBuffer(44 + data), v = new DataView(buf);
    const tag = (o, s) => [...s].forEach((c, i) => v.setUint8(o + i, c.charCodeAt(0)));
    tag(0, 'RIFF'); v.setUint32(4, 36 + data, true); tag(8, 'WAVE'); tag(12, 'fmt ');
    v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, channels, true);
    v.setUint32(24, 32000, true); v.setUint32(28, 32000 * channels * 2, true);
    v.setUint16(32, channels * 2, true); v.setUint16(34, 16, true); tag(36, 'data'); v.setUint32(40, data, true);
    frames.forEach((f, i) => f.forEach((s, ch) => v.setInt16(44 + (i * channels + ch) * 2, s, true)));
    return buf;
}

const stereo = parseWav(wav16([[16384, 0], [-16384, -16384], [8192, 24576]], 2));
check('stereo WAV: 2 channels, 3 frames, 32 kHz', stereo.channels === 2 && stereo.samples.length === 3
      && stereo.sampleRate === 32000, JSON.stringify({ c: stereo.channels, n: stereo.samples.length }));
check('stereo WAV: the samples are the mean of left and right',
      stereo.samples[0] === 0.25 && stereo.samples[1] === -0.5 && stereo.samples[2] === 0.5,
      Array.from(stereo.samples).join(' '));
const mono = parseWav(wav16([[16384], [-8192]], 1));
check('mono WAV: 1 channel, its own samples', mono.channels === 1 && mono.samples[0] === 0.5
      && mono.samples[1] === -0.25, Array.from(mono.samples).join(' '));
console.log(`wave: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
