// Photo analysis for the photo-to-music page: a deterministic, colour-based
// heuristic (it measures pixels, it does not recognise what the photo shows).
// Pure functions over an ImageData-like {width, height, data: RGBA bytes}, so
// node can test them without a browser. README.md ("The analysis heuristic")
// documents every formula and threshold below; keep the two in step.

export const ANALYSIS_SIZE = 128;      // the photo is scaled to fit 128 x 128 first (browser side)
export const CHROMA_MIN = 0.1;         // a pixel with chroma below this has no hue
export const EDGE_MIN = 0.5;           // Sobel magnitude (luma in 0..1) that counts as an edge
export const HUE_SHARE_MIN = 0.15;     // a hue bin is dominant from this share of the chroma weight

// 12 hue bins of 30 degrees, centred on 0, 30, ..., 330; the instrument each suggests.
export const HUES = [
    { name: 'red',          deg: 0,   instrument: 'electric guitar' },
    { name: 'orange',       deg: 30,  instrument: 'brass' },
    { name: 'yellow',       deg: 60,  instrument: 'acoustic guitar' },
    { name: 'lime',         deg: 90,  instrument: 'marimba' },
    { name: 'green',        deg: 120, instrument: 'flute' },
    { name: 'spring green', deg: 150, instrument: 'harp' },
    { name: 'cyan',         deg: 180, instrument: 'synth pads' },
    { name: 'azure',        deg: 210, instrument: 'electric piano' },
    { name: 'blue',         deg: 240, instrument: 'piano' },
    { name: 'violet',       deg: 270, instrument: 'strings' },
    { name: 'magenta',      deg: 300, instrument: 'synthesizer' },
    { name: 'rose',         deg: 330, instrument: 'violin' },
];

const round = (x, digits) => {
    const f = 10 ** digits;
    return Math.round(x * f) / f;
};
const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

// Pixel statistics. Alpha is ignored (the page draws the photo on white).
// Returns numbers rounded to 3 decimals (the mapping uses the rounded values,
// so the form follows from the numbers the page shows).
export function measure(img) {
    const { width: w, height: h, data } = img;
    const n = w * h;
    if (!(n > 0) || data.length < 4 * n) {
        throw new Error('measure: empty or short image');
    }
    const luma = new Float32Array(n);
    const bins = new Float64Array(12);
    let sumY = 0, sumY2 = 0, sumC = 0, sumWarm = 0, weight = 0;
    for (let i = 0; i < n; i++) {
        const r = data[4 * i] / 255, g = data[4 * i + 1] / 255, b = data[4 * i + 2] / 255;
        const y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        luma[i] = y;
        sumY += y;
        sumY2 += y * y;
        const max = Math.max(r, g, b), min = Math.min(r, g, b), c = max - min;
        sumC += c;
        sumWarm += r - b;
        if (c >= CHROMA_MIN) {
            let hue;                                   // HSV hue in degrees, 0..360
            if (max === r) hue = 60 * (((g - b) / c + 6) % 6);
            else if (max === g) hue = 60 * ((b - r) / c + 2);
            else hue = 60 * ((r - g) / c + 4);
            bins[Math.floor(((hue + 15) % 360) / 30)] += c;
            weight += c;
        }
    }
    const mean = sumY / n;
    let edges = 0, inner = 0;
    for (let y = 1; y < h - 1; y++) {
        for (let x = 1; x < w - 1; x++) {
            const p = (dx, dy) => luma[(y + dy) * w + x + dx];
            const gx = p(1, -1) + 2 * p(1, 0) + p(1, 1) - p(-1, -1) - 2 * p(-1, 0) - p(-1, 1);
            const gy = p(-1, 1) + 2 * p(0, 1) + p(1, 1) - p(-1, -1) - 2 * p(0, -1) - p(1, -1);
            inner++;
            if (Math.hypot(gx, gy) >= EDGE_MIN) edges++;
        }
    }
    const hues = [];
    if (weight > 0) {
        const order = [...bins.keys()].sort((a, b) => bins[b] - bins[a] || a - b);
        for (const k of order.slice(0, 3)) {
            if (bins[k] >= HUE_SHARE_MIN * weight) {
                hues.push({ name: HUES[k].name, deg: HUES[k].deg, share: round(bins[k] / weight, 3) });
            }
        }
    }
    return {
        brightness: round(mean, 3),
        contrast: round(Math.sqrt(Math.max(0, sumY2 / n - mean * mean)), 3),
        saturation: round(sumC / n, 3),
        warmth: round(sumWarm / n, 3),
        edgeDensity: round(inner ? edges / inner : 0, 3),
        hues,
    };
}

// The analysis form (request fields) from the measures.
export function toForm(m) {
    const s = Math.min(1, m.saturation / 0.5);          // vividness 0..1
    const c = Math.min(1, m.contrast / 0.25);           // contrast 0..1
    const e = Math.min(1, m.edgeDensity / 0.2);         // busyness 0..1
    const warm = clamp((m.warmth + 0.2) / 0.4, 0, 1);   // 0 cool .. 1 warm
    const energy = round(clamp(10 * (0.35 * m.brightness + 0.25 * s + 0.2 * c + 0.2 * e), 0, 10), 1);
    const valence = round(0.5 * m.brightness + 0.3 * warm + 0.2 * s, 3);

    let mood;
    if (energy >= 6) mood = valence >= 0.55 ? 'joyful' : valence >= 0.35 ? 'energetic' : 'tense';
    else if (energy >= 3.5) mood = valence >= 0.55 ? 'hopeful' : valence >= 0.35 ? 'contemplative' : 'melancholic';
    else if (m.brightness < 0.3 && m.contrast >= 0.2) mood = 'dark';
    else mood = valence >= 0.5 ? 'dreamy' : 'calm';

    let genres;
    if (energy < 3.5) genres = ['ambient', warm >= 0.5 ? 'lo-fi' : 'classical'];
    else if (energy < 6) genres = [warm >= 0.5 ? 'folk' : 'cinematic', s >= 0.5 ? 'pop' : 'jazz'];
    else genres = [warm >= 0.5 ? 'pop' : 'electronic', e >= 0.75 ? 'rock' : warm >= 0.5 ? 'funk' : 'pop'];

    const instruments = [];
    for (const hue of m.hues) {
        const name = HUES.find((x) => x.name === hue.name).instrument;
        if (!instruments.includes(name)) instruments.push(name);
    }
    for (const extra of [m.brightness >= 0.5 ? 'piano' : 'cello', energy >= 6 ? 'drums' : 'soft percussion']) {
        if (instruments.length < 2 && !instruments.includes(extra)) instruments.push(extra);
    }

    return {
        mood,
        energy,
        genres,
        tempo_bpm: clamp(Math.round(60 + 9 * energy + 30 * e), 40, 200),
        styleLevel: round(10 * (0.5 * s + 0.5 * c), 1),
        instruments: instruments.slice(0, 3),
        vocalType: 'instrumental',
        valence,
    };
}

export function analyse(img) {
    const metrics = measure(img);
    return { metrics, form: toForm(metrics) };
}
