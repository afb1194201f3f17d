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

// The clip is streamed: the <audio> element gets the GET URL, so sound
// starts with the first chunks while the server is still generating. WAV,
// because its exact Content-Length gives the player the duration up front
// and Chromium and Firefox play it as it arrives (Ogg and MP3 come chunked,
// without a length; Safari plays <audio> only from ranges, which the module
// answers from the complete clip). The page always sends a seed (a random
// one when the field is empty): a seeded GET is immutable and cacheable, so
// the page's own fetch of the same URL, made once the player has the
// response's headers, is usually served from the browser's cache as the
// player's response arrives (one generation; when the browser does not share
// the in-flight response, the seeded request runs again and gives the same
// bytes), and gives the status, the errors in JSON, and the bytes for the
// waveform, the download and Extend.
const randomSeed = () => Math.floor(Math.random() * 2 ** 31);

function streamUrl(body) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(body)) q.set(k, Array.isArray(v) ? v.join(',') : String(v));
    q.set('format', 'wav');
    return `${endpoint}?${q}`;
}

let streaming = null;           // the clip whose stream the player has, until it first sounds

$('player').addEventListener('playing', () => {
    const clip = streaming;
    if (!clip || clip.firstSoundMs !== undefined) return;
    clip.firstSoundMs = performance.now() - clip.t0;
    if (clip.entry) clip.entry.firstSoundMs = clip.firstSoundMs;   // the clip arrived before it sounded
    // one rounded figure for the text and the page's dataset, so both say the same
    const ms = Math.round(clip.firstSoundMs);
    root.dataset.firstSoundMs = String(ms);
    $('first-sound').textContent = `First sound ${(ms / 1000).toFixed(2)} s after the click.`;
});

// Resolves 'audio' once the player has the stream's headers (a 200 it can
// play), 'error' when it could not load it (a 4xx or 5xx, a refused
// connection); the page's fetch then says which.
function startStream(clip, signal) {
    const player = $('player');
    return new Promise((resolve, reject) => {
        const off = () => {
            player.removeEventListener('loadedmetadata', ok);
            player.removeEventListener('error', bad);
            signal.removeEventListener('abort', cancel);
        };
        const ok = () => { off(); resolve('audio'); };
        const bad = () => { off(); resolve('error'); };
        const cancel = () => { off(); reject(new DOMException('cancelled', 'AbortError')); };
        player.addEventListener('loadedmetadata', ok);
        player.addEventListener('error', bad);
        signal.addEventListener('abort', cancel);
        streaming = clip;
        $('result').hidden = false;
        $('first-sound').textContent = 'Waiting for the first sound…';
        player.src = clip.url;
        // started in the click's task, so the browser's autoplay rule sees the user's gesture
        player.play().catch(() => {
            if (streaming === clip && clip.firstSoundMs === undefined) {
                $('first-sound').textContent = 'The browser did not start playback: press play.';
            }
        });
    });
}

function stopPlayer() {
    const player = $('player');
    player.pause();
    player.removeAttribute('src');
    player.load();                  // closes the stream: the module cancels the job
}

// After a stream that failed or was cancelled: the clip on show before it
// again, or no result at all.
function restorePlayer() {
    stopPlayer();
    streaming = null;
    if (current) display(current, current.blobUrl);
    else $('result').hidden = true;
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
    if (body.seed === undefined) body.seed = randomSeed();
    const url = streamUrl(body);
    const ctrl = new AbortController();
    running = { ctrl };
    setBusy(true, body.duration);
    $('status').textContent = `Generating ${body.duration ?? 'the default length of'} s of music…`;
    delete root.dataset.firstSoundMs;
    delete root.dataset.receivedMs;
    const clicked = performance.now();
    let attempt = 0;
    try {
        for (;;) {
            const clip = { url, body, t0: clicked };
            const loaded = await startStream(clip, ctrl.signal);
            let res;
            try {
                res = await fetch(url, { signal: ctrl.signal });
                if (res.ok) {
                    const bytes = await res.arrayBuffer();
                    clip.receivedMs = performance.now() - clip.t0;
                    root.dataset.receivedMs = String(Math.round(clip.receivedMs));
                    clearError();           // a retry that worked: the busy notice is over
                    setPhase('decoding', 'Decoding audio…');
                    $('status').textContent = 'The clip has arrived; decoding the audio…';
                    try {
                        await showResult(clip, bytes, loaded === 'audio');
                    } catch (e) {
                        showError(`The clip arrived but could not be shown: ${e.message}.`);
                        $('status').textContent = 'Generation failed: the clip could not be shown.';
                    }
                    return;
                }
            } catch (e) {
                if (ctrl.signal.aborted) throw e;
                restorePlayer();
                if (res) {
                    // the headers came, the body ended short: the server stopped the stream
                    showError(`The stream ended before the clip was complete (${e.message}): the server stopped the`
                              + ' generation, or its timeout passed. Try a shorter duration.');
                    $('status').textContent = 'Generation failed: the stream ended early.';
                    return;
                }
                showError(`Network error: could not reach the server at ${location.origin}${endpoint} (${e.message}). `
                          + 'Check the connection, or that nginx is running, then generate again.');
                $('status').textContent = 'Generation failed: network error.';
                return;
            }
            const data = await res.json().catch(() => null);
            if (ctrl.signal.aborted) throw new DOMException('cancelled', 'AbortError');
            const fail = describeFailure(res.status, data);
            if ((res.status === 429 || res.status === 503) && attempt < MAX_RETRIES) {
                attempt++;
                await waitToRetry(res, fail, attempt, ctrl.signal);
                continue;
            }
            const gaveUp = (res.status === 429 || res.status === 503) ? ` Gave up after ${MAX_RETRIES} retries; try again later.` : '';
            restorePlayer();
            showError(fail.text + gaveUp, res.status === 400 ? fail.field : null);
            $('status').textContent = `Generation failed (${res.status}).`;
            return;
        }
    } catch (e) {
        if (e.name !== 'AbortError') throw e;
        restorePlayer();
        clearError();
        $('status').textContent = 'Generation cancelled.';
    } finally {
        running = null;
        setBusy(false);
    }
}

async function waitToRetry(res, fail, attempt, signal) {
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
        await sleep(wait * 1000, signal);
    } finally {
        clearInterval(timer);
    }
    $('status').textContent = `Retrying (attempt ${attempt} of ${MAX_RETRIES})…`;
    setPhase('generating', 'Generating on the server…');
}

function slug(s) {
    return (s || '').toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40)
        .replace(/-+$/, '') || 'clip';
}

// A clip in the history: its bytes (kept for the waveform, the download and
// Extend), what was asked, and what the page measured or the server said.
async function addClip({ bytes, body, prompt, seconds, promptSeconds, firstSoundMs, receivedMs, source }) {
    const blob = new Blob([bytes], { type: 'audio/wav' });
    const decoded = await decodeAudio(bytes.slice(0)).catch((e) => ({ error: e.message }));
    const duration = decoded.duration ?? seconds ?? body.duration;
    const entry = {
        n: history.length + 1, body, bytes, prompt, promptSeconds, firstSoundMs, receivedMs, source,
        duration: Number(duration.toFixed(2)),
        sampleRate: decoded.sampleRate,
        channels: decoded.channels,
        blobUrl: URL.createObjectURL(blob),
        fileName: `musicgen-${slug(body.mood || body.prompt || prompt)}-seed${body.seed}-${Number(duration.toFixed(1))}s.wav`,
        when: new Date(),
        samples: decoded.samples || null,
        decodeError: decoded.error,
    };
    if (receivedMs && entry.duration) lastRate = receivedMs / 1000 / entry.duration;
    history.push(entry);
    return entry;
}

async function showResult(clip, bytes, streamed) {
    const entry = await addClip({ bytes, body: clip.body, firstSoundMs: clip.firstSoundMs, receivedMs: clip.receivedMs, source: 'stream' });
    clip.entry = entry;
    // the player keeps the stream it is playing; one that could not play it gets the bytes
    display(entry, streamed ? null : entry.blobUrl);
    addToHistory(entry);
    $('status').textContent = `Done: a ${entry.duration} s clip (seed ${entry.body.seed}), received in ${(clip.receivedMs / 1000).toFixed(1)} s.`;
}

function describeRequest(body) {
    return Object.entries(body).filter(([k]) => k !== 'audio_prompt' && k !== 'seed' && k !== 'duration')
        .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(', ') : v}`).join(' · ');
}

// "stereo " for a stereo model's clips (the waveform shows their mean), "mono " for mono
function channelsName(n) {
    return n === 2 ? 'stereo ' : n === 1 ? 'mono ' : '';
}

let current = null;             // the clip on show, which Extend continues

function display(entry, src) {
    current = entry;
    if (src) streaming = null;
    $('result').hidden = false;
    $('result-prompt-label').textContent = entry.prompt ? 'Prompt the server built:' : 'Asked for (the server builds the prompt from these):';
    $('result-prompt').textContent = entry.prompt || describeRequest(entry.body);
    $('result-meta').textContent = `Clip ${entry.n} · ${entry.duration} s · seed ${entry.body.seed} · ${entry.sampleRate || '?'} Hz ${channelsName(entry.channels)}WAV`
        + ` · ${(entry.bytes.byteLength / 1024).toFixed(0)} KiB`
        + (entry.receivedMs ? ` · received in ${(entry.receivedMs / 1000).toFixed(2)} s` : '');
    $('first-sound').textContent = entry.firstSoundMs !== undefined
        ? `First sound ${(Math.round(entry.firstSoundMs) / 1000).toFixed(2)} s after the click.`
        : (!src && streaming && streaming.entry === entry ? 'Waiting for the first sound…' : '');
    $('prompt-seconds').textContent = entry.source === 'extend'
        ? (entry.promptSeconds !== undefined
            ? `Continues ${Number(entry.promptSeconds).toFixed(2)} s of clip ${entry.extends} (prompt_seconds).`
            : `Sent clip ${entry.extends} as the audio prompt; the server did not report prompt_seconds.`)
        : '';
    if (src) $('player').src = src;
    const a = $('download');
    a.href = entry.blobUrl;
    a.download = entry.fileName;
    a.textContent = `Download ${entry.fileName}`;
    const max = Number(root.dataset.maxDuration) || 30;
    $('extend').disabled = entry.duration >= max;
    $('extend-note').textContent = entry.duration >= max
        ? `This clip is already the longest the server allows (${max} s).`
        : `Continues this clip up to ${Math.min(max, Math.round(entry.duration) + Number($('f-extend-by').value || 0))} s in all (the server allows ${max} s).`;
    const canvas = $('waveform');
    canvas.width = Math.max(300, Math.round(canvas.clientWidth * (window.devicePixelRatio || 1))) || 800;
    if (entry.samples) {
        drawWaveform(canvas, entry.samples);
        canvas.setAttribute('aria-label', `Waveform of clip ${entry.n} (${entry.duration} s)`);
    } else {
        canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
        canvas.setAttribute('aria-label', `No waveform: ${entry.decodeError}`);
    }
}

const dataUrlOf = (blob) => new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
});

// Extend: the clip on show goes back as audio_prompt with the same fields and
// a longer total duration (the prompt included). A POST body cannot be an
// <audio> source, so the answer is the JSON with the whole clip (its data
// URL), played once it has arrived.
async function extend() {
    const base = current;
    if (!base || running) return;
    clearError();
    const max = Number(root.dataset.maxDuration) || 30;
    const total = Math.min(max, Math.round(base.duration) + Number($('f-extend-by').value || 0));
    const fields = { ...base.body };
    const body = { ...fields, duration: total,
                   audio_prompt: await dataUrlOf(new Blob([base.bytes], { type: 'audio/wav' })) };
    const ctrl = new AbortController();
    running = { ctrl };
    setBusy(true, total);
    stopPlayer();
    $('status').textContent = `Extending clip ${base.n} to ${total} s…`;
    const t0 = performance.now();
    try {
        let res, data;
        try {
            res = await fetch(endpoint, {
                method: 'POST',
                headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
                body: JSON.stringify(body),
                signal: ctrl.signal,
            });
            data = await res.json().catch(() => null);
        } catch (e) {
            if (ctrl.signal.aborted) throw e;
            showError(`Network error: could not reach the server at ${location.origin}${endpoint} (${e.message}).`);
            $('status').textContent = 'Extending failed: network error.';
            return;
        }
        if (!(res.ok && data && data.success && data.audioUrl)) {
            const fail = describeFailure(res.status, data);
            showError(fail.text, res.status === 400 ? fail.field : null);
            $('status').textContent = `Extending failed (${res.status}).`;
            return;
        }
        setPhase('decoding', 'Decoding audio…');
        const bytes = await (await fetch(data.audioUrl)).arrayBuffer();
        const entry = await addClip({ bytes, body: { ...fields, duration: total, seed: data.seed }, prompt: data.prompt,
                                      seconds: data.duration, promptSeconds: data.prompt_seconds,
                                      receivedMs: performance.now() - t0, source: 'extend' });
        entry.extends = base.n;
        display(entry, entry.blobUrl);
        addToHistory(entry);
        $('player').play().catch(() => {});
        $('status').textContent = `Done: clip ${base.n} extended to ${entry.duration} s (clip ${entry.n}).`;
    } catch (e) {
        if (e.name !== 'AbortError') throw e;
        clearError();
        $('status').textContent = 'Extending cancelled.';
    } finally {
        running = null;
        setBusy(false);
    }
}

function addToHistory(entry) {
    const li = document.createElement('li');
    const title = document.createElement('div');
    title.textContent = `${entry.when.toLocaleTimeString()} · ${entry.duration} s · seed ${entry.body.seed}`
        + (entry.extends ? ` · extends clip ${entry.extends}` : '') + `: “${entry.prompt || describeRequest(entry.body)}”`;
    const buttons = document.createElement('div');
    buttons.className = 'buttons';
    buttons.style.justifyContent = 'flex-start';
    const show = document.createElement('button');
    show.type = 'button';
    show.className = 'secondary';
    show.textContent = `Show clip ${entry.n}`;
    show.addEventListener('click', () => {
        display(entry, entry.blobUrl);
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
$('extend').addEventListener('click', () => extend());
$('f-extend-by').addEventListener('input', () => current && display(current, null));
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
