// Photo to music: the page's behaviour. No framework, no build step.
// Talks to the module's endpoint on the same origin (data-endpoint on <html>,
// "/generate"; ?api=/functions/v1/generate-music picks the reference URL).
import { analyse, HUES, ANALYSIS_SIZE } from './analysis.js';
import { decodeAudio, drawWaveform } from './wave.js';

const $ = (id) => document.getElementById(id);
const root = document.documentElement;
const MAX_RETRIES = 4;          // 429/503: retries before giving up
const RETRY_CAP_S = 120;        // longest wait honoured from Retry-After

const FIELD_LABELS = {
    mood: 'Mood', energy: 'Energy', genres: 'Genres', tempo_bpm: 'Tempo', styleLevel: 'Style level',
    vocalType: 'Vocals', instruments: 'Instruments', duration: 'Duration', seed: 'Seed',
};
const FIELD_ALIASES = { tempo: 'tempo_bpm', tempoBpm: 'tempo_bpm', style_level: 'styleLevel', vocal_type: 'vocalType' };

// ---- endpoint and the server's longest clip ----

function pickEndpoint() {
    const api = new URLSearchParams(location.search).get('api');
    // a path on this origin only: no scheme, no "//host"
    if (api && /^\/(?!\/)[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(api)) return api;
    return root.dataset.endpoint || '/generate';
}
const endpoint = pickEndpoint();
$('endpoint').textContent = endpoint;

function setMaxDuration(max, source) {
    const n = $('f-duration'), r = $('f-duration-range');
    n.max = r.max = String(max);
    $('max-duration').textContent = String(max);
    if (Number(n.value) > max) n.value = r.value = String(max);
    root.dataset.maxDuration = String(max);
    root.dataset.maxDurationSource = source;
    $('max-duration-src').textContent = source === 'server'
        ? `The server allows up to ${max} s.` : `Up to ${max} s (the page's default; the server did not say).`;
}

// The module has no "limits" call; a request with an impossible duration is
// answered 400 before any work, naming the field and the limit:
// "duration: must be at least 1 and at most 30 (got 1e+09)".
async function learnMaxDuration() {
    setMaxDuration(Number(root.dataset.maxDuration) || 30, 'page');
    try {
        const res = await fetch(endpoint, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
            body: JSON.stringify({ prompt: 'duration limit probe', duration: 1e9 }),
        });
        const data = await res.json().catch(() => null);
        const m = res.status === 400 && data && data.field === 'duration'
            && /at most ([0-9]+(?:\.[0-9]+)?)/.exec(data.error || '');
        if (m && Number(m[1]) >= 1) setMaxDuration(Math.floor(Number(m[1])), 'server');
    } catch {
        /* offline: keep the page's default; generate will report the network */
    }
    root.dataset.ready = '1';
}

// ---- photo: choose, drop, analyse ----

let previewUrl = null;

function showPhotoError(msg) {
    const e = $('photo-error');
    e.textContent = msg;
    e.hidden = !msg;
}

async function loadPhoto(file) {
    showPhotoError('');
    if (!file) return;
    if (file.type && !file.type.startsWith('image/')) {
        showPhotoError(`“${file.name}” is not an image (${file.type}). Choose a photo.`);
        return;
    }
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.src = url;
    try {
        await img.decode();
    } catch {
        URL.revokeObjectURL(url);
        showPhotoError(`Could not read “${file.name}” as an image.`);
        return;
    }
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = url;
    $('photo-preview').src = url;
    $('photo-name').textContent = `${file.name} · ${img.naturalWidth} × ${img.naturalHeight}`;
    $('photo-figure').hidden = false;

    // scaled to fit ANALYSIS_SIZE, drawn on white (transparent areas count as white)
    const scale = Math.min(1, ANALYSIS_SIZE / Math.max(img.naturalWidth, img.naturalHeight));
    const w = Math.max(1, Math.round(img.naturalWidth * scale));
    const h = Math.max(1, Math.round(img.naturalHeight * scale));
    const canvas = document.createElement('canvas');
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, w, h);
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(img, 0, 0, w, h);
    const { metrics, form } = analyse(ctx.getImageData(0, 0, w, h));
    showMetrics(metrics, form);
    fillForm(form);
    $('status').textContent = `Analysed “${file.name}”: ${form.mood}, energy ${form.energy}, ${form.tempo_bpm} BPM.`;
}

const pct = (x) => `${Math.round(x * 100)} %`;

function showMetrics(m, form) {
    $('m-brightness').textContent = `${m.brightness.toFixed(3)} (${pct(m.brightness)})`;
    $('m-contrast').textContent = m.contrast.toFixed(3);
    $('m-saturation').textContent = m.saturation.toFixed(3);
    $('m-warmth').textContent = `${m.warmth >= 0 ? '+' : ''}${m.warmth.toFixed(3)} (${m.warmth > 0.05 ? 'warm' : m.warmth < -0.05 ? 'cool' : 'neutral'})`;
    $('m-edges').textContent = `${m.edgeDensity.toFixed(3)} (${pct(m.edgeDensity)} of pixels)`;
    const hues = $('m-hues');
    hues.replaceChildren();
    if (!m.hues.length) hues.textContent = 'none (greyscale)';
    m.hues.forEach((hue, i) => {
        const sw = document.createElement('span');
        sw.className = 'swatch';
        sw.style.background = `hsl(${hue.deg} 90% 50%)`;
        sw.setAttribute('aria-hidden', 'true');
        hues.append(i ? ', ' : '', sw, `${hue.name} ${pct(hue.share)}`);
    });
    $('m-valence').textContent = form.valence.toFixed(3);
    const list = $('metrics-list');
    list.dataset.metrics = JSON.stringify(m);
    list.hidden = false;
    $('metrics-empty').hidden = true;
}

function fillForm(f) {
    $('f-mood').value = f.mood;
    $('f-energy').value = String(f.energy);
    $('f-genres').value = f.genres.join(', ');
    $('f-tempo_bpm').value = String(f.tempo_bpm);
    $('f-styleLevel').value = String(f.styleLevel);
    $('f-instruments').value = f.instruments.join(', ');
    $('f-vocalType').value = f.vocalType;
    clearFieldErrors();
}

for (const id of ['photo-input', 'camera-input']) {
    $(id).addEventListener('change', (ev) => {
        loadPhoto(ev.target.files[0]);
        ev.target.value = '';           // choosing the same file again re-analyses it
    });
}
const zone = $('drop-zone');
for (const type of ['dragenter', 'dragover']) {
    zone.addEventListener(type, (ev) => {
        ev.preventDefault();
        ev.dataTransfer.dropEffect = 'copy';
        zone.classList.add('over');
    });
}
zone.addEventListener('dragleave', (ev) => {
    if (!zone.contains(ev.relatedTarget)) zone.classList.remove('over');
});
zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    zone.classList.remove('over');
    const file = [...(ev.dataTransfer.files || [])].find((f) => !f.type || f.type.startsWith('image/'))
        || ev.dataTransfer.files[0];
    if (file) loadPhoto(file);
});
// a photo dropped beside the zone must not navigate away from the page
window.addEventListener('dragover', (ev) => ev.preventDefault());
window.addEventListener('drop', (ev) => ev.preventDefault());

// ---- the request ----

const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

// Values go to the server as typed: it is the one that validates, and its
// 400 names the field, which is then marked here.
function numberField(id) {
    const el = $(id);
    if (el.value.trim() === '') {
        return el.validity.badInput ? NaN : undefined;
    }
    return Number(el.value);
}

function buildRequest() {
    const body = {};
    const mood = $('f-mood').value.trim();
    if (mood) body.mood = mood;
    for (const [key, id] of [['energy', 'f-energy'], ['tempo_bpm', 'f-tempo_bpm'], ['styleLevel', 'f-styleLevel'],
                             ['duration', 'f-duration'], ['seed', 'f-seed']]) {
        const v = numberField(id);
        if (v === undefined) continue;
        if (Number.isNaN(v)) {
            throw Object.assign(new Error(`${FIELD_LABELS[key]}: not a number`), { field: key });
        }
        body[key] = v;
    }
    const genres = list($('f-genres').value), instruments = list($('f-instruments').value);
    if (genres.length) body.genres = genres;
    if (instruments.length) body.instruments = instruments;
    body.vocalType = $('f-vocalType').value;
    return body;
}

// ---- generation ----

let running = null;             // { ctrl } while a request (or its retry wait) is in flight
let lastRate = null;            // seconds of compute per second of audio, from the last clip
const history = [];

function clearFieldErrors() {
    for (const el of document.querySelectorAll('[aria-invalid=true]')) el.removeAttribute('aria-invalid');
}

// The error box sits below the form: after focusing the field it names, the
// box is scrolled into view too (the least scrolling that shows it, so a
// field close above stays in view as well).
function showError(text, field) {
    const box = $('error');
    box.replaceChildren();
    box.append(text);
    box.hidden = false;
    if (field) {
        const id = `f-${FIELD_ALIASES[field] || field}`;
        const el = $(id);
        if (el) {
            el.setAttribute('aria-invalid', 'true');
            el.focus();
        }
    }
    box.scrollIntoView({ block: 'nearest' });
}

function clearError() {
    $('error').hidden = true;
    $('error').replaceChildren();
}

function fieldOf(serverField) {
    const f = (serverField || '').replace(/^analysis\./, '');
    return FIELD_ALIASES[f] || f;
}

function describeFailure(status, data) {
    const msg = data && data.error ? data.error : null;
    switch (status) {
    case 400: {
        const f = fieldOf(data && data.field);
        const label = FIELD_LABELS[f] || f;
        return {
            text: label
                ? `The server refused the request (400 Bad Request) because of the field “${label}” (${f}): ${msg || 'invalid value'}. Correct it and generate again.`
                : `The server refused the request (400 Bad Request): ${msg || 'invalid request'}.`,
            field: f,
        };
    }
    case 413: return { text: 'The request is too large for the server (413 Payload Too Large): use fewer or shorter words.' };
    case 415: return { text: 'The server wants JSON (415 Unsupported Media Type).' };
    case 429: return { text: `Too many requests (429): the server is rate limiting. ${msg || ''}`.trim() };
    case 503: return { text: `The server is busy or not ready (503 Service Unavailable): ${msg || 'try again later'}.` };
    case 504: return { text: `The generation took too long and was stopped (504 Gateway Timeout)${msg ? `: ${msg}` : ''}. Try a shorter duration.` };
    default:
        return { text: `The server answered ${status}${msg ? `: ${msg}` : ''}.` };
    }
}

// Seconds to wait before retry n (1-based): Retry-After when given (seconds
// or an HTTP date, capped at RETRY_CAP_S), else 2, 4, 8, 16 s.
export function retryDelay(header, n) {
    if (header) {
        const s = /^\s*\d+\s*$/.test(header) ? Number(header) : (Date.parse(header) - Date.now()) / 1000;
        if (Number.isFinite(s)) return Math.min(RETRY_CAP_S, Math.max(1, Math.ceil(s)));
    }
    return Math.min(RETRY_CAP_S, 2 ** n);
}

function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        const t = setTimeout(resolve, ms);
        signal.addEventListener('abort', () => {
            clearTimeout(t);
            reject(new DOMException('cancelled', 'AbortError'));
        }, { once: true });
    });
}

// What the busy page waits for. The server answers once, with the finished
// clip (it reports no steps), so the page knows two phases: the request (the
// server encodes the text, runs the decoder steps, then EnCodec makes the
// audio) and its own decoding of the clip for the player and the waveform.
function setPhase(name, text) {
    root.dataset.phase = name;
    $('phase').textContent = text;
}

function setBusy(on, durationS) {
    setPhase(on ? 'generating' : '', on ? 'Generating on the server…' : '');
    $('generate').disabled = on;
    $('cancel').hidden = !on;
    $('progress').hidden = !on;
    root.dataset.busy = on ? '1' : '0';
    clearInterval(setBusy.timer);
    if (!on) return;
    const t0 = performance.now();
    const expect = lastRate && durationS ? ` (about ${Math.max(1, Math.round(lastRate * durationS))} s expected)` : '';
    const tick = () => {
        $('elapsed').textContent = `${((performance.now() - t0) / 1000).toFixed(1)} s elapsed${expect}`;
    };
    tick();
    setBusy.timer = setInterval(tick, 100);
}

async function generate() {
    if (running) return;
    clearError();
    clearFieldErrors();
    let body;
    try {
        body = buildRequest();
    } catch (e) {
        showError(`${e.message}. Correct it and generate again.`, e.field);
        return;
    }
    const ctrl = new AbortController();
    running = { ctrl };
    setBusy(true, body.duration);
    $('status').textContent = `Generating ${body.duration ?? 'the default length of'} s of music…`;
    let attempt = 0;
    try {
        for (;;) {
            let res, data;
            try {
                res = await fetch(endpoint, {
                    method: 'POST',
                    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
                    body: JSON.stringify(body),
                    signal: ctrl.signal,
                });
                data = await res.json().catch(() => null);
                if (ctrl.signal.aborted) throw new DOMException('cancelled', 'AbortError');
            } catch (e) {
                if (ctrl.signal.aborted) throw e;
                showError(`Network error: could not reach the server at ${location.origin}${endpoint} (${e.message}). `
                          + 'Check the connection, or that nginx is running, then generate again.');
                $('status').textContent = 'Generation failed: network error.';
                return;
            }
            if (res.ok && data && data.success && data.audioUrl) {
                clearError();               // a retry that worked: the busy notice is over
                setPhase('decoding', 'Decoding audio…');
                $('status').textContent = 'The clip has arrived; decoding the audio…';
                try {
                    await showResult(data, body);
                } catch (e) {
                    showError(`The clip arrived but could not be shown: ${e.message}.`);
                    $('status').textContent = 'Generation failed: the clip could not be shown.';
                }
                return;
            }
            const fail = describeFailure(res.status, data);
            if ((res.status === 429 || res.status === 503) && attempt < MAX_RETRIES) {
                attempt++;
                const wait = retryDelay(res.headers.get('Retry-After'), attempt);
                showError(`${fail.text} Retrying automatically (attempt ${attempt} of ${MAX_RETRIES})`
                          + `${res.headers.get('Retry-After') ? `, as the server asked, in ${wait} s` : ` in ${wait} s`}.`);
                const countdown = document.createElement('span');
                countdown.className = 'countdown';
                countdown.setAttribute('aria-live', 'off');
                $('error').append(' ', countdown);
                const until = Date.now() + wait * 1000;
                const tick = () => { countdown.textContent = `(${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s left)`; };
                tick();
                const timer = setInterval(tick, 250);
                $('status').textContent = `Server busy (${res.status}); retrying in ${wait} s.`;
                setPhase('waiting', 'Waiting to retry…');
                try {
                    await sleep(wait * 1000, ctrl.signal);
                } finally {
                    clearInterval(timer);
                }
                $('status').textContent = `Retrying (attempt ${attempt} of ${MAX_RETRIES})…`;
                setPhase('generating', 'Generating on the server…');
                continue;
            }
            const gaveUp = (res.status === 429 || res.status === 503) ? ` Gave up after ${MAX_RETRIES} retries; try again later.` : '';
            showError(fail.text + gaveUp, res.status === 400 ? fail.field : null);
            $('status').textContent = `Generation failed (${res.status}).`;
            return;
        }
    } catch (e) {
        if (e.name !== 'AbortError') throw e;
        clearError();
        $('status').textContent = 'Generation cancelled.';
    } finally {
        running = null;
        setBusy(false);
    }
}

function slug(s) {
    return (s || '').toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40)
        .replace(/-+$/, '') || 'clip';
}

async function showResult(data, body) {
    const blob = await (await fetch(data.audioUrl)).blob();
    const format = (data.format || 'wav').toLowerCase();
    const ext = { wav: 'wav', flac: 'flac', ogg: 'ogg', opus: 'ogg', mp3: 'mp3' }[format] || 'wav';
    const entry = {
        n: history.length + 1,
        data,
        url: data.audioUrl,
        blobUrl: URL.createObjectURL(blob),
        fileName: `musicgen-${slug(body.mood || data.prompt)}-seed${data.seed}-${data.duration}s.${ext}`,
        when: new Date(),
        samples: null,
    };
    try {
        entry.samples = (await decodeAudio(await blob.arrayBuffer())).samples;
    } catch (e) {
        entry.decodeError = e.message;
    }
    if (data.generation_time_seconds && data.duration) lastRate = data.generation_time_seconds / data.duration;
    history.push(entry);
    display(entry);
    addToHistory(entry);
    $('status').textContent = `Done: a ${data.duration} s clip (seed ${data.seed}) in ${Number(data.generation_time_seconds).toFixed(1)} s.`;
}

function display(entry) {
    const d = entry.data;
    $('result').hidden = false;
    $('result-prompt').textContent = d.prompt;
    $('result-meta').textContent = `Clip ${entry.n} · ${d.duration} s · seed ${d.seed} · ${d.sample_rate} Hz ${String(d.format).toUpperCase()}`
        + ` · ${(d.size_bytes / 1024).toFixed(0)} KiB · generated in ${Number(d.generation_time_seconds).toFixed(2)} s`;
    $('player').src = entry.url;
    const a = $('download');
    a.href = entry.blobUrl;
    a.download = entry.fileName;
    a.textContent = `Download ${entry.fileName}`;
    const canvas = $('waveform');
    canvas.width = Math.max(300, Math.round(canvas.clientWidth * (window.devicePixelRatio || 1))) || 800;
    if (entry.samples) {
        drawWaveform(canvas, entry.samples);
        canvas.setAttribute('aria-label', `Waveform of clip ${entry.n} (${d.duration} s)`);
    } else {
        canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
        canvas.setAttribute('aria-label', `No waveform: ${entry.decodeError}`);
    }
}

function addToHistory(entry) {
    const d = entry.data;
    const li = document.createElement('li');
    const title = document.createElement('div');
    title.textContent = `${entry.when.toLocaleTimeString()} · ${d.duration} s · seed ${d.seed}: “${d.prompt}”`;
    const buttons = document.createElement('div');
    buttons.className = 'buttons';
    buttons.style.justifyContent = 'flex-start';
    const show = document.createElement('button');
    show.type = 'button';
    show.className = 'secondary';
    show.textContent = `Show clip ${entry.n}`;
    show.addEventListener('click', () => {
        display(entry);
        $('player').focus();
    });
    const dl = document.createElement('a');
    dl.className = 'button secondary';
    dl.href = entry.blobUrl;
    dl.download = entry.fileName;
    dl.textContent = `Download clip ${entry.n}`;
    buttons.append(show, dl);
    li.append(title, buttons);
    $('history').prepend(li);
    $('history-empty').hidden = true;
}

// ---- wiring ----

$('gen-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    generate();
});
$('cancel').addEventListener('click', () => running && running.ctrl.abort());
document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && running) running.ctrl.abort();
});
$('f-duration-range').addEventListener('input', (ev) => { $('f-duration').value = ev.target.value; });
$('f-duration').addEventListener('input', (ev) => {
    if (ev.target.value !== '') $('f-duration-range').value = ev.target.value;
});
$('gen-form').addEventListener('input', (ev) => ev.target.removeAttribute('aria-invalid'));
// for tests and the curious: the same functions the page uses
window.musicgenPage = { analyse, HUES, endpoint, history };

learnMaxDuration();
