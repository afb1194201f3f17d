// The photo-to-music page in headless Chromium against the real module (see
// run.sh, which starts the two nginx instances and sets the environment).
// Nothing is intercepted: every response comes from nginx.
import { chromium } from 'playwright-core';
import { execSync } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, readFileSync } from 'node:fs';
import { brightWarm, darkCool, encodePng } from './images.mjs';
import { parseWav } from '../../html/wave.js';

const BASE = process.env.BASE_URL, BROKEN = process.env.BROKEN_URL, OUT = process.env.OUT_DIR || 'build/browser';
const MAX_DURATION = Number(process.env.MAX_DURATION || 30);   // /generate's musicgen_max_duration (run.sh)
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
              '--disable-component-update', '--disable-sync', '--no-first-run'];
mkdirSync(OUT, { recursive: true });

let passed = 0, failed = 0;
function check(name, ok, detail = '') {
    if (ok) { passed++; console.log(`ok   - ${name}`); }
    else { failed++; console.log(`FAIL - ${name}${detail !== '' ? `: ${detail}` : ''}`); }
    return ok;
}
async function step(name, fn) {
    try {
        await fn();
    } catch (e) {
        check(name, false, (e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : String(e)));
    }
}

const BRIGHT = encodePng(brightWarm()), DARK = encodePng(darkCool());

// Uncaught errors and CSP refusals fail the run; "Failed to load resource"
// lines are Chromium's notes on the 4xx/5xx the tests provoke on purpose.
const problems = [];
function watch(page, label) {
    page.on('pageerror', (e) => problems.push(`${label}: uncaught ${e.message}`));
    page.on('console', (m) => {
        if (m.type() === 'error' && !/Failed to load resource|net::ERR_CONNECTION_REFUSED/.test(m.text())) {
            problems.push(`${label}: console error ${m.text()}`);
        }
    });
}

async function ready(page) {
    await page.waitForFunction(() => document.documentElement.dataset.ready === '1', null, { timeout: 10000 });
}
async function analysisOf(page) {
    return page.evaluate(() => ({
        metrics: JSON.parse(document.getElementById('metrics-list').dataset.metrics),
        shown: document.getElementById('metrics-list').innerText,
        mood: document.getElementById('f-mood').value,
        energy: Number(document.getElementById('f-energy').value),
        genres: document.getElementById('f-genres').value,
        tempo: Number(document.getElementById('f-tempo_bpm').value),
        style: Number(document.getElementById('f-styleLevel').value),
        instruments: document.getElementById('f-instruments').value,
    }));
}
async function waitAnalysed(page, name) {
    await page.waitForFunction((n) => document.getElementById('photo-name').textContent.startsWith(n)
        && !document.getElementById('metrics-list').hidden, name, { timeout: 10000 });
}
async function dropFile(page, selector, name, bytes) {
    await page.evaluate(([sel, n, b64]) => {
        const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bin], n, { type: 'image/png' }));
        const el = document.querySelector(sel);
        for (const type of ['dragenter', 'dragover', 'drop']) {
            el.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
        }
    }, [selector, name, bytes.toString('base64')]);
}
// POSTs JSON on a connection of its own (not node's keep-alive pool) until the
// answer is 200 or timeoutMs passes; returns the last status (0: no answer).
async function freshPost(url, body, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let status = 0;
    for (;;) {
        status = await new Promise((resolve) => {
            const req = http.request(url, { method: 'POST', agent: false, headers: { 'Content-Type': 'application/json' } },
                                     (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
            req.on('error', () => resolve(0));
            req.end(JSON.stringify(body));
        });
        if (status === 200 || Date.now() > deadline) return status;
        await new Promise((res) => setTimeout(res, 200));
    }
}
// Waits for a generation to finish (result shown or an error), returns what the page shows.
async function generated(page, timeout = 60000) {
    await page.waitForFunction(() => document.documentElement.dataset.busy === '0', null, { timeout });
    return page.evaluate(async () => {
        const audio = document.getElementById('player');
        if (!document.getElementById('error').hidden || !audio.src) {
            return { error: document.getElementById('error').innerText, status: document.getElementById('status').innerText };
        }
        if (audio.readyState < 1) await new Promise((res, rej) => {
            audio.addEventListener('loadedmetadata', res, { once: true });
            audio.addEventListener('error', () => rej(new Error(`audio error ${audio.error && audio.error.code}`)), { once: true });
        });
        const c = document.getElementById('waveform');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let wave = 0;                         // pixels in the waveform colour (#0b5cad)
        for (let i = 0; i < px.length; i += 4) if (px[i] === 11 && px[i + 1] === 92 && px[i + 2] === 173) wave++;
        const dl = document.getElementById('download');
        return {
            src: audio.currentSrc.slice(0, 300), duration: audio.duration, wave, pixels: c.width * c.height,
            prompt: document.getElementById('result-prompt').textContent,
            firstSound: document.getElementById('first-sound').textContent,
            promptSeconds: document.getElementById('prompt-seconds').textContent,
            download: dl.getAttribute('download'), href: dl.href.slice(0, 5),
            history: document.querySelectorAll('#history li').length,
            status: document.getElementById('status').innerText,
        };
    });
}
async function setField(page, id, value) {
    await page.fill(`#${id}`, String(value));
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
try {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 }, acceptDownloads: true });
    const page = await ctx.newPage();
    watch(page, 'main');
    // the page's calls to the module: its fetches and the player's stream
    const posts = [], calls = [];
    page.on('request', (r) => {
        if (r.method() === 'POST') posts.push(new URL(r.url()).pathname);
        if (['fetch', 'media'].includes(r.resourceType()) && /\/generate/.test(r.url())) calls.push(`${r.method()} ${r.url()}`);
    });

    await step('page loads', async () => {
        const res = await page.goto(`${BASE}/`);
        check('GET / serves the page (200, text/html)', res.status() === 200
              && /text\/html/.test(res.headers()['content-type']), `${res.status()} ${res.headers()['content-type']}`);
        await ready(page);
        const d = await page.evaluate(() => ({
            max: document.getElementById('f-duration').max, src: document.documentElement.dataset.maxDurationSource,
            rangeMax: document.getElementById('f-duration-range').max,
            note: document.getElementById('heuristic-note').innerText,
            unlabelled: [...document.querySelectorAll('input, select, button, textarea')]
                .filter((e) => e.getAttribute('aria-hidden') !== 'true' && e.type !== 'hidden'
                        && !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
                .map((e) => e.id || e.outerHTML.slice(0, 60)),
            capture: document.getElementById('camera-input').hasAttribute('capture')
                && document.getElementById('camera-input').accept === 'image/*',
        }));
        check(`the duration control offers the server's maximum (${MAX_DURATION} s; the page's default is 30)`,
              d.max === String(MAX_DURATION) && d.rangeMax === String(MAX_DURATION) && d.src === 'server', JSON.stringify(d));
        check('the page says the analysis is a colour-based heuristic', /colour-based heuristic/i.test(d.note));
        check('every control has a label', d.unlabelled.length === 0, d.unlabelled.join(', '));
        check('a camera input (accept=image/*, capture) for phones', d.capture);
        const icon = await page.evaluate(async () => {
            const link = document.querySelector('link[rel=icon]');
            const r = await fetch(link.href);
            return { href: link.getAttribute('href'), status: r.status, type: r.headers.get('content-type'),
                     svg: /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/.test(await r.text()) };
        });
        check('the page links an SVG icon the server serves', icon.status === 200 && /^image\/svg\+xml/.test(icon.type)
              && icon.svg, JSON.stringify(icon));
        const ico = await fetch(`${BASE}/favicon.ico`);
        check('/favicon.ico is not a 404 (204, no body)', ico.status === 204 && (await ico.text()) === '', String(ico.status));
    });

    let bright, dark;
    await step('analysis of two photos', async () => {
        await page.setInputFiles('#photo-input', { name: 'sunny.png', mimeType: 'image/png', buffer: BRIGHT });
        await waitAnalysed(page, 'sunny.png');
        bright = await analysisOf(page);
        await dropFile(page, '#drop-zone', 'night.png', DARK);
        await waitAnalysed(page, 'night.png');
        dark = await analysisOf(page);
        console.log(`#   bright warm: ${JSON.stringify(bright)}`);
        console.log(`#   dark cool:   ${JSON.stringify(dark)}`);
        const b = bright.metrics, k = dark.metrics;
        check('the photo is shown', await page.evaluate(() => {
            const img = document.getElementById('photo-preview');
            return img.complete && img.naturalWidth === 160 && !document.getElementById('photo-figure').hidden;
        }));
        check('the numbers are shown', /Brightness/.test(bright.shown) && bright.shown.includes(b.brightness.toFixed(3))
              && /orange/.test(bright.shown) && /blue/.test(dark.shown));
        check('bright warm photo: brighter, warmer, more contrast and edges than dark cool one (chosen file)',
              b.brightness > k.brightness + 0.3 && b.warmth > 0.2 && k.warmth < -0.05
              && b.contrast > k.contrast && b.edgeDensity > k.edgeDensity, JSON.stringify({ b, k }));
        check('bright warm -> joyful/energetic, energy >= 6, tempo >= 120',
              ['joyful', 'energetic'].includes(bright.mood) && bright.energy >= 6 && bright.tempo >= 120);
        check('dark cool (dropped) -> calm, ambient, energy < 3.5, tempo < 90',
              dark.mood === 'calm' && /ambient/.test(dark.genres) && dark.energy < 3.5 && dark.tempo < 90);
        check('livelier, faster, more modern for the bright photo',
              bright.energy > dark.energy && bright.tempo > dark.tempo && bright.style > dark.style);
    });

    await step('generate', async () => {
        // the dark photo's description, 2 s, seed 5
        await setField(page, 'f-duration', 2);
        await setField(page, 'f-seed', 5);
        // a clip of the demo model can take well under a second: record what
        // the page shows from inside it, at every change
        await page.evaluate(() => {
            window.sawProgress = false;
            window.sawDecoding = false;
            window.phases = [];
            const look = () => {
                const progress = document.getElementById('progress');
                window.sawProgress ||= progress.checkVisibility()
                    && document.getElementById('cancel').checkVisibility()
                    && /^\d+\.\d s elapsed/.test(document.getElementById('elapsed').textContent);
                const phase = document.documentElement.dataset.phase;
                if (phase && phase !== window.phases.at(-1)) window.phases.push(phase);
                // an indeterminate bar (no value) keeps moving while the clip is decoded
                window.sawDecoding ||= phase === 'decoding' && progress.checkVisibility()
                    && !document.getElementById('progress-bar').hasAttribute('value')
                    && document.getElementById('phase').textContent === 'Decoding audio…';
            };
            new MutationObserver(look).observe(document.body, { subtree: true, attributes: true, childList: true, characterData: true });
        });
        const t0 = Date.now();
        await page.click('#generate');
        const r = await generated(page);
        const sawProgress = await page.evaluate(() => window.sawProgress);
        const seen = await page.evaluate(() => ({ phases: window.phases, decoding: window.sawDecoding }));
        check('progress and Cancel are gone when done', await page.evaluate(() => !document.getElementById('progress').checkVisibility()
            && !document.getElementById('cancel').checkVisibility() && !document.getElementById('generate').disabled));
        console.log(`#   result: ${JSON.stringify(r)} in ${Date.now() - t0} ms`);
        check('progress with elapsed time while generating', sawProgress);
        check('after the answer, "Decoding audio…" with a moving bar until the clip is shown',
              seen.decoding && seen.phases.join(',') === 'generating,decoding', JSON.stringify(seen));
        const src = new URL(r.src || 'about:blank');
        check('the audio element plays the streamed GET URL (WAV, the fields, seed 5)', src.pathname === '/generate'
              && src.searchParams.get('format') === 'wav' && src.searchParams.get('seed') === '5'
              && src.searchParams.get('mood') === 'calm' && src.searchParams.get('duration') === '2', r.src || r.error);
        // a short clip can arrive whole before the player starts: the page shows the figure once it plays
        const firstSound = await page.waitForFunction(() => /^First sound/.test(document.getElementById('first-sound').textContent),
                                                      null, { timeout: 10000 }).then(() => page.textContent('#first-sound'), () => r.firstSound);
        check('the time to first sound is shown', /^First sound \d+\.\d\d s after the click\.$/.test(firstSound), firstSound);
        check('of the requested duration (2 s)', Math.abs(r.duration - 2) < 0.05, String(r.duration));
        check('the waveform is drawn', r.wave > r.pixels * 0.02, `${r.wave} of ${r.pixels}`);
        check('what was asked is shown', /mood calm/.test(r.prompt) && /ambient/.test(r.prompt), r.prompt);
        check('a download with a sensible name', r.download === 'musicgen-calm-seed5-2s.wav' && r.href === 'blob:', `${r.download} ${r.href}`);
        check('the requests went to /generate', calls.length >= 2 && calls.slice(-2).every((c) => c.startsWith(`GET ${BASE}/generate?`)),
              calls.join(','));
        const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
        const wav = readFileSync(await dl.path());
        const parsed = parseWav(wav.buffer.slice(wav.byteOffset, wav.byteOffset + wav.length));
        check('the downloaded file is that WAV, 2 s long', dl.suggestedFilename() === 'musicgen-calm-seed5-2s.wav'
              && Math.abs(parsed.duration - 2) < 0.05, `${dl.suggestedFilename()} ${wav.length} bytes, ${parsed.duration} s`);
    });

    await step('a second generation and the history', async () => {
        await page.setInputFiles('#photo-input', { name: 'sunny.png', mimeType: 'image/png', buffer: BRIGHT });
        await waitAnalysed(page, 'sunny.png');
        await setField(page, 'f-duration', 1);
        await setField(page, 'f-seed', '');
        await page.click('#generate');
        const r = await generated(page);
        check('second clip: 1 s, random seed', Math.abs(r.duration - 1) < 0.05 && /^musicgen-joyful-seed\d+-1s\.wav$|^musicgen-energetic-seed\d+-1s\.wav$/.test(r.download || ''),
              JSON.stringify(r));
        check('the history lists both clips', r.history === 2, String(r.history));
        await page.click('#history li:last-child button');
        const back = await page.evaluate(() => document.getElementById('download').getAttribute('download'));
        check('a history entry shows its clip again', back === 'musicgen-calm-seed5-2s.wav', back);
    });

    await step('extend continues the clip on show', async () => {
        // clip 1 (2 s, calm, seed 5) is on show after the history step
        await setField(page, 'f-extend-by', 3);
        const isPost = (r) => r.method() === 'POST' && new URL(r.url()).pathname === '/generate';
        const [req, resp] = await Promise.all([page.waitForRequest(isPost), page.waitForResponse((x) => isPost(x.request())),
                                               page.click('#extend')]);
        const sent = req.postDataJSON();
        const answer = await resp.json().catch(() => null);
        const r = await generated(page);
        if (resp.status() === 400 && answer && answer.field === 'audio_prompt' && /not supported/i.test(answer.error || '')) {
            console.log(`SKIP - extend: needs branch wire (the engine's continuation from audio_prompt); the server says: ${answer.error}`);
            return;
        }
        const b64 = /^data:audio\/wav;base64,(.*)$/.exec(sent.audio_prompt || '');
        const prompt = b64 && Buffer.from(b64[1], 'base64');
        const promptWav = prompt && parseWav(prompt.buffer.slice(prompt.byteOffset, prompt.byteOffset + prompt.length));
        check('Extend POSTs clip 1 as audio_prompt (a 2 s WAV data URL) with its fields and a total duration of 5 s',
              promptWav && Math.abs(promptWav.duration - 2) < 0.05 && sent.duration === 5 && sent.mood === 'calm'
              && sent.seed === 5, JSON.stringify({ ...sent, audio_prompt: (sent.audio_prompt || '').slice(0, 40) }));
        check('the answer is the longer clip (200, JSON with its data URL)', resp.status() === 200 && answer && answer.success,
              `${resp.status()} ${answer && answer.error}`);
        check('the player has the extended clip, longer than the first (5 s)', Math.abs(r.duration - 5) < 0.05
              && /^blob:/.test(r.src || ''), JSON.stringify(r));
        await page.waitForFunction(() => { const a = document.getElementById('player'); return !a.paused && a.currentTime > 0; },
                                   null, { timeout: 10000 })
            .then(() => check('the extended clip plays', true), (e) => check('the extended clip plays', false, e.message.split('\n')[0]));
        check('the prompt the server built is shown', /ambient/.test(r.prompt) && r.prompt.split(' ').length >= 10, r.prompt);
        if (answer && answer.prompt_seconds !== undefined) {
            check('prompt_seconds from the response is shown', r.promptSeconds.includes(`${Number(answer.prompt_seconds).toFixed(2)} s of clip 1`)
                  && Math.abs(answer.prompt_seconds - 2) < 0.05, `${r.promptSeconds} (${answer.prompt_seconds})`);
        } else {
            console.log('SKIP - prompt_seconds shown: needs branch wire (this server accepts audio_prompt but does not'
                        + ' report prompt_seconds: it does not continue from audio yet)');
            check('the page says the server did not report prompt_seconds', /did not report prompt_seconds/.test(r.promptSeconds), r.promptSeconds);
        }
    });

    await step('a long clip plays while it is generated', async () => {
        // the server's maximum, past the demo model's window: generated window by window
        const totals = async () => (await (await fetch(`${BASE}/status`)).json()).totals;
        await setField(page, 'f-duration', MAX_DURATION);
        await setField(page, 'f-seed', 21);
        const before = await totals();
        await page.click('#generate');
        const r = await generated(page, 180000);
        const t = await page.evaluate(() => ({ firstSound: Number(document.documentElement.dataset.firstSoundMs),
                                               received: Number(document.documentElement.dataset.receivedMs) }));
        const after = await totals();
        console.log(`#   ${MAX_DURATION} s clip: first sound after ${t.firstSound} ms, all of it received after ${t.received} ms`);
        check(`a ${MAX_DURATION} s clip`, Math.abs(r.duration - MAX_DURATION) < 0.05, JSON.stringify(r));
        check('the player started (its "playing" event) before the response was complete', t.firstSound > 0 && t.firstSound < t.received,
              JSON.stringify(t));
        check('its time to first sound is shown', r.firstSound === `First sound ${(t.firstSound / 1000).toFixed(2)} s after the click.`,
              r.firstSound);
        // Chromium usually serves the page's fetch from the player's response
        // as it streams (one generation); when its cache does not share the
        // in-flight response (seen under load), the seeded GET runs once more
        // and gives the same bytes. Never more than those two.
        const runs = after.completed - before.completed;
        console.log(`#   ${MAX_DURATION} s clip: ${runs} generation(s) for the player and the page's fetch`);
        check('at most two generations for the player and the page\'s fetch of the same seeded URL (usually one: the browser\'s cache)',
              runs === 1 || runs === 2, `${before.completed} -> ${after.completed}`);
    });

    await step('a real 400 from the server', async () => {
        // a short window: the error text (below the form) starts below the fold
        await page.setViewportSize({ width: 1100, height: 600 });
        await setField(page, 'f-energy', 15);
        const n = calls.length;
        await page.click('#generate');
        const r = await generated(page);
        const state = await page.evaluate(() => {
            const box = document.getElementById('error').getBoundingClientRect();
            return {
                invalid: document.getElementById('f-energy').getAttribute('aria-invalid'),
                focused: document.activeElement && document.activeElement.id,
                errorInView: box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight,
            };
        });
        await page.setViewportSize({ width: 1100, height: 900 });
        check('energy 15 is sent to the server', calls.slice(n).some((c) => /[?&]energy=15&/.test(c)), calls.slice(n).join(','));
        check('its 400 is shown in words naming the field', /400/.test(r.error || '') && /Energy/.test(r.error)
              && /energy: must be at least 0 and at most 10 \(got 15\)/.test(r.error), r.error || JSON.stringify(r));
        check('the field is marked invalid and focused', state.invalid === 'true' && state.focused === 'f-energy', JSON.stringify(state));
        check('the error text is scrolled into view', state.errorInView, JSON.stringify(state));
        await setField(page, 'f-energy', 5);
        check('editing the field clears the mark', await page.evaluate(() => !document.getElementById('f-energy').hasAttribute('aria-invalid')));
    });

    await step('keyboard', async () => {
        await page.focus('a.skip');            // the first stop: "Skip to the form"
        const order = [];
        for (let i = 0; i < 16; i++) {
            await page.keyboard.press('Tab');
            order.push(await page.evaluate(() => document.activeElement.id || document.activeElement.tagName));
        }
        const want = ['photo-input', 'camera-input', 'f-mood', 'f-energy', 'f-tempo_bpm', 'f-styleLevel', 'f-genres',
                      'f-instruments', 'f-vocalType', 'f-duration', 'f-seed', 'generate'];
        check('Tab reaches the photo inputs, every field and Generate, in order',
              want.every((id, i) => order.indexOf(id) >= 0 && (i === 0 || order.indexOf(id) > order.indexOf(want[i - 1]))),
              order.join(' '));
        check('a focused file input shows its focus on its button', await page.evaluate(() => {
            document.getElementById('photo-input').focus({ focusVisible: true });
            return getComputedStyle(document.querySelector('label[for=photo-input]')).outlineStyle === 'solid';
        }));
        const n = await page.evaluate(() => document.querySelectorAll('#history li').length);
        await page.focus('#f-seed');
        await page.keyboard.type('11');
        await page.keyboard.press('Enter');
        const r = await generated(page);
        check('Enter in a field generates', r.history === n + 1 && /seed11-/.test(r.download || ''), JSON.stringify(r));
    });

    await step('contrast', async () => {
        // WCAG AA: 4.5:1 for text, 3:1 for large text, against the nearest opaque background
        const bad = await page.evaluate(() => {
            const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
            const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
                .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
            const bg = (el) => {
                for (let e = el; e; e = e.parentElement) {
                    const c = rgb(getComputedStyle(e).backgroundColor);
                    if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
                }
                return [255, 255, 255];
            };
            const out = [];
            for (const el of document.querySelectorAll('body *')) {
                if (!el.checkVisibility() || ![...el.childNodes].some((x) => x.nodeType === 3 && x.textContent.trim())) continue;
                const cs = getComputedStyle(el);
                const a = lum(rgb(cs.color)), b = lum(bg(el));
                const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
                const size = parseFloat(cs.fontSize), large = size >= 24 || (size >= 18.66 && Number(cs.fontWeight) >= 700);
                if (ratio < (large ? 3 : 4.5)) out.push(`${el.tagName}#${el.id} ${ratio.toFixed(2)}`);
            }
            return out;
        });
        check('all visible text has AA contrast', bad.length === 0, bad.join(', '));
    });

    await step('screenshots', async () => {
        await page.screenshot({ path: `${OUT}/page.png`, fullPage: true });
        check(`screenshot written: ${OUT}/page.png`, readFileSync(`${OUT}/page.png`).length > 10000);
    });

    await step('phone-sized screen', async () => {
        const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
        const p = await phone.newPage();
        watch(p, 'phone');
        await p.goto(`${BASE}/`);
        await ready(p);
        await p.setInputFiles('#camera-input', { name: 'camera.png', mimeType: 'image/png', buffer: BRIGHT });
        await waitAnalysed(p, 'camera.png');
        const fit = await p.evaluate(() => ({ sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth }));
        check('no horizontal scrolling at 375 px wide', fit.sw <= fit.cw, JSON.stringify(fit));
        await p.screenshot({ path: `${OUT}/page-phone.png`, fullPage: true });
        await phone.close();
    });

    // a stereo model's clip (run.sh's third instance): played, drawn, said to be stereo, downloaded with 2 channels
    if (process.env.STEREO_URL) await step('a stereo model', async () => {
        const p = await ctx.newPage();
        watch(p, 'stereo');
        await p.goto(`${process.env.STEREO_URL}/`);
        await ready(p);
        await setField(p, 'f-duration', 2);
        await setField(p, 'f-seed', 3);
        await p.click('#generate');
        const r = await generated(p);
        check('stereo: a 2 s clip, its waveform drawn', Math.abs(r.duration - 2) < 0.05 && r.wave > r.pixels * 0.02,
              JSON.stringify(r));
        const played = await p.waitForFunction(() => /^First sound/.test(document.getElementById('first-sound').textContent),
                                               null, { timeout: 10000 }).then(() => true, () => false);
        check('stereo: the player plays it', played);
        const meta = await p.textContent('#result-meta');
        check('stereo: the clip line says stereo WAV', / Hz stereo WAV /.test(meta), meta);
        const [dl] = await Promise.all([p.waitForEvent('download'), p.click('#download')]);
        const wav = readFileSync(await dl.path());
        const parsed = parseWav(wav.buffer.slice(wav.byteOffset, wav.byteOffset + wav.length));
        check('stereo: the downloaded WAV has 2 channels of 2 s', parsed.channels === 2 && Math.abs(parsed.duration - 2) < 0.05,
              `${parsed.channels} channels, ${parsed.duration} s`);
        await p.close();
    });

    await step('the reference URL', async () => {
        const p = await ctx.newPage();
        watch(p, 'reference');
        const seen = [];
        p.on('request', (r) => { if (['fetch', 'media'].includes(r.resourceType())) seen.push(new URL(r.url()).pathname); });
        await p.goto(`${BASE}/?api=/functions/v1/generate-music`);
        await ready(p);
        await setField(p, 'f-duration', 1);
        await p.click('#generate');
        const r = await generated(p);
        check('?api=/functions/v1/generate-music generates there', seen.length >= 2
              && seen.every((x) => x === '/functions/v1/generate-music') && Math.abs(r.duration - 1) < 0.05,
              `${seen.join(',')} ${JSON.stringify(r)}`);
        await p.close();
    });

    await step('a real 503 (model not loaded), cancelled, then retried after Retry-After', async () => {
        const p = await ctx.newPage();
        watch(p, 'broken');
        const log = [];
        // the page's fetches, which learn the status after the player's stream failed
        const mine = (r) => r.resourceType() === 'fetch' && /\/generate/.test(r.url());
        p.on('request', (r) => { if (mine(r)) log.push({ t: Date.now(), what: 'request' }); });
        p.on('response', (r) => { if (mine(r.request())) log.push({ t: Date.now(), what: r.status(), retry: r.headers()['retry-after'] }); });
        await p.goto(`${BROKEN}/`);
        await ready(p);
        const src = await p.evaluate(() => [document.documentElement.dataset.maxDurationSource,
                                            document.getElementById('max-duration-src').textContent]);
        check('a server that cannot say its maximum: the page default, and the page says so',
              src[0] === 'page' && /did not say/.test(src[1]), JSON.stringify(src));
        log.length = 0;
        await setField(p, 'f-duration', 1);
        await p.click('#generate');
        await p.waitForFunction(() => /Retrying/.test(document.getElementById('error').innerText), null, { timeout: 10000 });
        const shown = await p.evaluate(() => document.getElementById('error').innerText);
        console.log(`#   shown: ${shown}`);
        check('the 503 is shown in words', /503 Service Unavailable/.test(shown) && /model is not loaded/.test(shown), shown);
        check('with the wait the server asked for (Retry-After: 30)', /as the server asked, in 30 s/.test(shown)
              && log.some((x) => x.what === 503 && x.retry === '30'), JSON.stringify(log));
        await p.click('#cancel');
        const c = await generated(p, 5000);
        check('Cancel stops the retries', /cancelled/.test(c.status) && !c.error, JSON.stringify(c));

        log.length = 0;
        await p.click('#generate');
        await p.waitForFunction(() => /Retrying/.test(document.getElementById('error').innerText), null, { timeout: 10000 });
        execSync(process.env.BROKEN_FIX, { stdio: 'ignore' });  // the good spiece.model, nginx -s reload
        const fixed = await freshPost(`${BROKEN}/generate`, { prompt: 'x', duration: 1 }, 10000);
        check('after the reload, a new connection gets 200', fixed === 200, `last status ${fixed}`);
        // An nginx worker from before a reload still answers the connections it
        // accepted (one Chromium opened ahead of use included): a retry on such
        // a connection gets 503 with Retry-After: 1 and the connection closed,
        // and the page's next try reaches the new worker. The page must honour
        // Retry-After and succeed once it reaches the fixed server.
        const t0 = Date.now();
        const r = await generated(p, 75000).catch((e) => ({ error: `not finished after ${Date.now() - t0} ms (${e.message.split('\n')[0]})` }));
        const first503 = log.find((x) => x.what === 503), retry = log.filter((x) => x.what === 'request')[1];
        const n503 = log.filter((x) => x.what === 503).length;
        if (n503 > 1) console.log(`#   ${n503} answers 503 (a retry reached the old worker): ${JSON.stringify(log)}`);
        check('the retry waited for Retry-After, then succeeded once the server was fixed',
              first503 && retry && retry.t - first503.t >= 29500 && Math.abs(r.duration - 1) < 0.05 && !r.error,
              `${JSON.stringify(log)} ${JSON.stringify(r)}`);

        // the server goes away: a network failure is reported as such
        execSync(process.env.BROKEN_STOP, { stdio: 'ignore' });
        let down = false;
        for (let i = 0; i < 100 && !down; i++) {
            down = await fetch(`${BROKEN}/`).then(() => false, () => true);
            if (!down) await new Promise((res) => setTimeout(res, 50));
        }
        check('the second nginx has stopped', down);
        await p.click('#generate');
        const n = await generated(p, 10000);
        check('a network failure says so', /Network error/.test(n.error || '') && /could not reach the server/.test(n.error), JSON.stringify(n));
        await p.screenshot({ path: `${OUT}/page-network-error.png`, fullPage: true });
        await p.close();
    });

    check('no uncaught errors or CSP refusals in the page', problems.length === 0, problems.join(' | '));
} finally {
    await browser.close();
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
