// Unit tests of html/analysis.js (no browser): known pixels give the
// documented numbers, and a bright warm busy picture maps to a livelier,
// faster, warmer description than a dark cool smooth one.
import { measure, toForm, analyse } from '../../html/analysis.js';
import { makeImage, brightWarm, darkCool, encodePng } from './images.mjs';

let passed = 0, failed = 0;
function check(name, ok, detail = '') {
    if (ok) { passed++; console.log(`ok   - ${name}`); }
    else { failed++; console.log(`FAIL - ${name}${detail ? `: ${detail}` : ''}`); }
}
const near = (a, b, eps = 1e-3) => Math.abs(a - b) <= eps;

// flat colours: exact figures
const white = measure(makeImage(8, 8, () => [255, 255, 255]));
check('white: brightness 1, no contrast, no saturation, no hue, no edges',
      white.brightness === 1 && white.contrast === 0 && white.saturation === 0 && white.hues.length === 0
      && white.edgeDensity === 0 && white.warmth === 0, JSON.stringify(white));
const red = measure(makeImage(8, 8, () => [255, 0, 0]));
check('pure red: brightness 0.213, saturation 1, warmth 1, hue red 100 %',
      red.brightness === 0.213 && red.saturation === 1 && red.warmth === 1
      && red.hues.length === 1 && red.hues[0].name === 'red' && red.hues[0].share === 1, JSON.stringify(red));
const blue = measure(makeImage(8, 8, () => [0, 0, 255]));
check('pure blue: warmth -1, hue blue', blue.warmth === -1 && blue.hues[0].name === 'blue', JSON.stringify(blue));
// half black, half white: contrast 0.5 (std dev), edges along the seam only
const split = measure(makeImage(10, 10, (x) => (x < 5 ? [0, 0, 0] : [255, 255, 255])));
check('black|white: brightness 0.5, contrast 0.5', split.brightness === 0.5 && split.contrast === 0.5, JSON.stringify(split));
check('black|white: the two seam columns of the 8x8 interior are edges (0.25)', split.edgeDensity === 0.25,
      String(split.edgeDensity));
// a hue below the chroma threshold is not counted
const greyish = measure(makeImage(4, 4, () => [130, 120, 120]));
check('chroma < 0.1 has no dominant hue', greyish.hues.length === 0, JSON.stringify(greyish.hues));
// two hues: both listed, larger share first
const two = measure(makeImage(10, 10, (x) => (x < 7 ? [0, 200, 0] : [255, 200, 0])));
check('green 70 % + amber 30 %: both dominant, green first',
      two.hues.length === 2 && two.hues[0].name === 'green' && two.hues[1].name === 'yellow', JSON.stringify(two.hues));

// the mapping's documented bands
const f1 = toForm({ brightness: 0.1, contrast: 0.05, saturation: 0.1, warmth: -0.15, edgeDensity: 0.01, hues: [] });
check('dark cool flat -> calm ambient, slow', f1.mood === 'calm' && f1.genres[0] === 'ambient' && f1.tempo_bpm < 80
      && f1.energy < 3.5, JSON.stringify(f1));
check('greyscale dark photo gets cello + soft percussion',
      JSON.stringify(f1.instruments) === '["cello","soft percussion"]', JSON.stringify(f1.instruments));
const f2 = toForm({ brightness: 0.1, contrast: 0.3, saturation: 0.1, warmth: 0, edgeDensity: 0.05, hues: [] });
check('dark high-contrast -> mood dark', f2.mood === 'dark', JSON.stringify(f2));
const f3 = toForm({ brightness: 0.8, contrast: 0.25, saturation: 0.6, warmth: 0.3, edgeDensity: 0.2,
                    hues: [{ name: 'orange', deg: 30, share: 0.7 }, { name: 'red', deg: 0, share: 0.3 }] });
check('bright warm vivid busy -> joyful pop/rock, fast, 10 style',
      f3.mood === 'joyful' && f3.genres.join() === 'pop,rock' && f3.tempo_bpm === Math.round(60 + 9 * f3.energy + 30)
      && f3.styleLevel === 10 && f3.instruments.join() === 'brass,electric guitar', JSON.stringify(f3));
check('energy is 10 x (0.35 b + 0.25 s + 0.2 c + 0.2 e)', f3.energy === 9.3, String(f3.energy));

// the two test photos (the same pixels the browser test uploads)
const bw = analyse(brightWarm()), dc = analyse(darkCool());
console.log(`#   bright warm: ${JSON.stringify(bw)}`);
console.log(`#   dark cool:   ${JSON.stringify(dc)}`);
check('bright warm is brighter, warmer, busier than dark cool',
      bw.metrics.brightness > dc.metrics.brightness + 0.3 && bw.metrics.warmth > 0.3 && dc.metrics.warmth < -0.05
      && bw.metrics.edgeDensity > dc.metrics.edgeDensity);
check('bright warm: energetic mood, fast; dark cool: calm ambient, slow',
      ['joyful', 'energetic'].includes(bw.form.mood) && bw.form.energy >= 6 && bw.form.tempo_bpm >= 120
      && dc.form.mood === 'calm' && dc.form.genres.includes('ambient') && dc.form.energy < 3.5 && dc.form.tempo_bpm < 90);
check('analysis is deterministic', JSON.stringify(analyse(brightWarm())) === JSON.stringify(bw));
const png = encodePng(darkCool());
check('PNG writer: signature and IHDR', png.subarray(1, 4).toString() === 'PNG' && png.readUInt32BE(16) === 160);

console.log(`analysis: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
