// WAV decoding and the waveform picture. parseWav reads RIFF/WAVE PCM (8, 16,
// 24, 32-bit integer) and IEEE float (32, 64-bit) into one mono channel (the
// mean of the channels); anything else goes through WebAudio in decodeAudio.

export function parseWav(buf) {
    const v = new DataView(buf);
    const tag = (o) => String.fromCharCode(v.getUint8(o), v.getUint8(o + 1), v.getUint8(o + 2), v.getUint8(o + 3));
    if (buf.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') {
        throw new Error('not a WAV file');
    }
    let fmt = null, off = 12;
    while (off + 8 <= buf.byteLength) {
        const id = tag(off), size = v.getUint32(off + 4, true), body = off + 8;
        if (id === 'fmt ') {
            let format = v.getUint16(body, true);
            const bits = v.getUint16(body + 14, true);
            if (format === 0xfffe && size >= 26) format = v.getUint16(body + 24, true); // WAVE_FORMAT_EXTENSIBLE
            fmt = { format, channels: v.getUint16(body + 2, true), rate: v.getUint32(body + 4, true), bits };
        } else if (id === 'data') {
            if (!fmt) throw new Error('WAV data before fmt');
            const bytes = fmt.bits / 8, frame = bytes * fmt.channels;
            const len = Math.min(size, buf.byteLength - body);
            const frames = Math.floor(len / frame);
            const out = new Float32Array(frames);
            const read = sampleReader(v, fmt);
            for (let i = 0; i < frames; i++) {
                let s = 0;
                for (let ch = 0; ch < fmt.channels; ch++) s += read(body + i * frame + ch * bytes);
                out[i] = s / fmt.channels;
            }
            return { sampleRate: fmt.rate, channels: fmt.channels, samples: out, duration: frames / fmt.rate };
        }
        off = body + size + (size & 1);
    }
    throw new Error('WAV without a data chunk');
}

function sampleReader(v, fmt) {
    if (fmt.format === 1) {
        switch (fmt.bits) {
        case 8: return (o) => (v.getUint8(o) - 128) / 128;
        case 16: return (o) => v.getInt16(o, true) / 32768;
        case 24: return (o) => ((v.getInt8(o + 2) << 16) | (v.getUint8(o + 1) << 8) | v.getUint8(o)) / 8388608;
        case 32: return (o) => v.getInt32(o, true) / 2147483648;
        }
    } else if (fmt.format === 3) {
        if (fmt.bits === 32) return (o) => v.getFloat32(o, true);
        if (fmt.bits === 64) return (o) => v.getFloat64(o, true);
    }
    throw new Error(`unsupported WAV encoding (format ${fmt.format}, ${fmt.bits} bits)`);
}

// Any format the browser can decode: WAV by hand, the rest through WebAudio.
export async function decodeAudio(buf) {
    try {
        return parseWav(buf);
    } catch (e) {
        const Ctx = globalThis.OfflineAudioContext || globalThis.webkitOfflineAudioContext;
        if (!Ctx) throw e;
        const audio = await new Ctx(1, 1, 44100).decodeAudioData(buf.slice(0));
        const out = new Float32Array(audio.length);
        for (let ch = 0; ch < audio.numberOfChannels; ch++) {
            const d = audio.getChannelData(ch);
            for (let i = 0; i < d.length; i++) out[i] += d[i] / audio.numberOfChannels;
        }
        return { sampleRate: audio.sampleRate, channels: audio.numberOfChannels, samples: out, duration: audio.duration };
    }
}

// Min/max of the samples per pixel column, drawn around the mid line; the
// peak is normalised so quiet audio is still visible.
export function drawWaveform(canvas, samples, { color = '#0b5cad', background = '#ffffff' } = {}) {
    const ctx = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height, mid = h / 2;
    ctx.fillStyle = background;
    ctx.fillRect(0, 0, w, h);
    ctx.fillStyle = '#9aa5b1';
    ctx.fillRect(0, Math.floor(mid), w, 1);
    if (!samples.length) return;
    let peak = 0;
    for (let i = 0; i < samples.length; i++) peak = Math.max(peak, Math.abs(samples[i]));
    const scale = peak > 0 ? (mid - 2) / peak : 0;
    ctx.fillStyle = color;
    const per = samples.length / w;
    for (let x = 0; x < w; x++) {
        const a = Math.floor(x * per), b = Math.max(a + 1, Math.floor((x + 1) * per));
        let lo = Infinity, hi = -Infinity;
        for (let i = a; i < b && i < samples.length; i++) {
            lo = Math.min(lo, samples[i]);
            hi = Math.max(hi, samples[i]);
        }
        if (lo === Infinity) continue;
        const top = mid - hi * scale, bottom = mid - lo * scale;
        ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
}
