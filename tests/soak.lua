-- wrk script for tests/soak.sh: a mix of valid generations (GET raw audio,
-- POST JSON), invalid requests (400) and CORS preflights, counted by status.
-- Each wrk thread counts its own responses; done() prints the totals as
-- key=value lines that soak.sh checks.
local threads = {}

function setup(thread)
    thread:set("id", #threads + 1)
    table.insert(threads, thread)
end

local kinds = {
    {"GET",  "/generate?prompt=calm+piano&duration=1&seed=%d", nil},
    {"GET",  "/generate?prompt=fast+drums&duration=1", nil},
    {"POST", "/generate", '{"prompt": "soft synth pads", "duration": 1, "seed": %d}'},
    {"POST", "/generate", '{"mood": "happy", "energy": 7, "genres": ["rock"], "duration": 1}'},
    {"GET",  "/generate?prompt=x&duration=-1", nil},                     -- 400
    {"GET",  "/generate?prompt=%%ff%%fe&duration=1", nil},               -- 400 invalid UTF-8
    {"POST", "/generate", '{"prompt": "a", "duration": NaN}'},            -- 400 not JSON
    {"POST", "/generate", '{"prompt": "a", "volume": 11}'},               -- 400 unknown key
    {"POST", "/generate", '{"prompt": ' .. string.rep("[", 64) .. '}'},  -- 400 nested
    {"OPTIONS", "/generate", nil},                                        -- 204 preflight
}

function init(args)
    counts = {}
    bad503 = 0
    n = 0
end

function request()
    n = n + 1
    local k = kinds[(n + id) % #kinds + 1]
    local path = string.format(k[2], n)
    local headers = {["Origin"] = "https://app.example"}
    local body = nil
    if k[3] then
        body = string.format(k[3], n)
        headers["Content-Type"] = "application/json"
    end
    if k[1] == "OPTIONS" then
        headers["Access-Control-Request-Method"] = "POST"
    end
    return wrk.format(k[1], path, headers, body)
end

function response(status, headers, body)
    counts[status] = (counts[status] or 0) + 1
    -- a deliberate 503 is the full queue's, with Retry-After
    if status == 503 and not (headers["Retry-After"] and body:find("queue is full", 1, true)) then
        bad503 = bad503 + 1
    end
end

function done(summary, latency, requests)
    local total = {}
    local bad = 0
    for _, t in ipairs(threads) do
        local c = t:get("counts")
        for status, k in pairs(c) do
            total[status] = (total[status] or 0) + k
        end
        bad = bad + t:get("bad503")
    end
    io.write(string.format("requests=%d\n", summary.requests))
    io.write(string.format("seconds=%.1f\n", summary.duration / 1e6))
    for status, k in pairs(total) do
        io.write(string.format("status_%d=%d\n", status, k))
    end
    io.write(string.format("bad_503=%d\n", bad))
    io.write(string.format("errors_connect=%d\nerrors_read=%d\nerrors_write=%d\nerrors_timeout=%d\n",
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
    io.write(string.format("p50_ms=%.1f\np99_ms=%.1f\nmax_ms=%.1f\n",
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
