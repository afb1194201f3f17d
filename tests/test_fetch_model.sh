#!/bin/sh
# Tests scripts/fetch-model.sh against a local stand-in for the Hugging Face
# Hub on 127.0.0.1 (python3 http.server). The server mimics the hub:
#   /OWNER/REPO/resolve/REV/FILE   small files: 200 with a git-sha1 ETag;
#                                  LFS files (*.safetensors, *.model): 302 to
#                                  /cdn/... with X-Linked-Etag = sha256 and
#                                  X-Linked-Size
#   /cdn/OWNER/REPO/FILE           the bytes, with Range support; HEAD is
#                                  refused (403) like a signed CDN URL
# Per-repository switches are files in the served repository folder:
#   .token (Bearer token required), .bad_etag, .bad_etag.FILE (FILE's only),
#   .no_etag, .moved (new OWNER/REPO, answered with a relative 307),
#   .fail_once (one 503).
# Sharded repositories serve model.safetensors.index.json and its shards
# (those of ../shared/golden-next/tiny-proj-sharded) instead of
# model.safetensors.
# Prints "N passed, N failed" last; exits non-zero on failure.
# shellcheck disable=SC2086 # file lists ($ALL, $REQUIRED) are split on purpose
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRIPT=$ROOT/scripts/fetch-model.sh
GOLDEN_DIR=${GOLDEN:-$ROOT/../shared/golden}
# the server changes directory: make the path absolute
GOLDEN_DIR=$(cd "$GOLDEN_DIR" 2>/dev/null && pwd || echo "$GOLDEN_DIR")
TINY=$GOLDEN_DIR/tiny-a
SHARDED=$GOLDEN_DIR/../golden-next/tiny-proj-sharded

passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { # $1 = description, rest = command
    d=$1; shift
    if "$@"; then ok "$d"; else fail "$d"; return 1; fi
}

command -v python3 >/dev/null 2>&1 || { echo "SKIP python3 missing"; echo "0 passed, 0 failed"; exit 0; }
command -v curl >/dev/null 2>&1 || { echo "SKIP curl missing"; echo "0 passed, 0 failed"; exit 0; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/test-fetch-model.XXXXXX") || exit 1
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Hermetic environment for the script under test.
unset HF_TOKEN HF_REVISION MG_MODEL_SHA256SUMS http_proxy https_proxy HTTP_PROXY HTTPS_PROXY \
      all_proxy ALL_PROXY 2>/dev/null
export NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 MG_FETCH_RETRIES=2 MG_FETCH_RETRY_DELAY=0

# ---- served files: the tiny golden model plus a dummy spiece.model ----
SRC=$TMP/src
mkdir -p "$SRC"
if [ -f "$TINY/model.safetensors" ]; then
    for f in config.json generation_config.json model.safetensors tokenizer_config.json \
             preprocessor_config.json; do
        ln -s "$TINY/$f" "$SRC/$f"
    done
else
    echo "note: $TINY missing; serving generated files"
    echo '{"model_type": "musicgen"}' > "$SRC/config.json"
    echo '{"max_length": 1500}' > "$SRC/generation_config.json"
    echo '{}' > "$SRC/tokenizer_config.json"
    echo '{}' > "$SRC/preprocessor_config.json"
    head -c 3000000 /dev/urandom > "$SRC/model.safetensors"
fi
# not the real tokenizer: any bytes will do
head -c 4099 /dev/urandom > "$SRC/spiece.model"
REQUIRED="config.json generation_config.json model.safetensors spiece.model"
INDEX=model.safetensors.index.json
SHARDS="model-00001-of-00003.safetensors model-00002-of-00003.safetensors model-00003-of-00003.safetensors"
if [ -f "$SHARDED/$INDEX" ]; then
    for f in $INDEX $SHARDS; do ln -s "$SHARDED/$f" "$SRC/$f"; done
else
    echo "note: $SHARDED missing; serving generated shards"
    i=0
    printf '{"metadata": {"total_size": 3000000}, "weight_map": {' > "$SRC/$INDEX"
    for f in $SHARDS; do
        i=$((i + 1))
        head -c 1000000 /dev/urandom > "$SRC/$f"
        printf '%s"t%d.weight": "%s"' "$([ $i -gt 1 ] && echo ', ')" $i "$f" >> "$SRC/$INDEX"
    done
    echo '}}' >> "$SRC/$INDEX"
fi
SHARDED_FILES="config.json generation_config.json spiece.model $INDEX $SHARDS"

SRV=$TMP/srv
mkrepo() { # $1 = OWNER/REPO, rest = files
    r=$1; shift
    mkdir -p "$SRV/$r"
    for f in "$@"; do ln -s "$SRC/$f" "$SRV/$r/$f"; done
}
ALL="$REQUIRED tokenizer_config.json preprocessor_config.json"
mkrepo tiny/model $ALL
mkrepo gated/model $ALL && echo sekrit > "$SRV/gated/model/.token"
mkrepo bad/model $ALL && touch "$SRV/bad/model/.bad_etag"
mkrepo noetag/model $ALL && touch "$SRV/noetag/model/.no_etag"
mkrepo nospiece/model config.json generation_config.json model.safetensors
mkrepo flaky/model $ALL && touch "$SRV/flaky/model/.fail_once"
mkdir -p "$SRV/old/model" && echo tiny/model > "$SRV/old/model/.moved"
mkrepo sharded/model $SHARDED_FILES
mkrepo badshard/model $SHARDED_FILES && touch "$SRV/badshard/model/.bad_etag.model-00002-of-00003.safetensors"
mkrepo noetagshard/model $SHARDED_FILES && touch "$SRV/noetagshard/model/.no_etag"
mkrepo partshard/model config.json generation_config.json spiece.model $INDEX model-00001-of-00003.safetensors
mkrepo evilshard/model config.json generation_config.json spiece.model
printf '{"weight_map": {"a.weight": "../evil.safetensors"}}' > "$SRV/evilshard/model/$INDEX"
mkrepo noweights/model config.json generation_config.json spiece.model

# ---- the server ----
cat > "$TMP/server.py" <<'EOF'
import hashlib, http.server, os, re, sys

root, log_path, port_path = sys.argv[1], sys.argv[2], sys.argv[3]
LFS = (".safetensors", ".model")

def flag(repo, name):
    return os.path.exists(os.path.join(root, repo, name))

class Hub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self):
        with open(log_path, "a") as f:
            f.write("%s %s range=%s auth=%s\n" % (self.command, self.path,
                    self.headers.get("Range", "-"), self.headers.get("Authorization", "-")))

    def reply(self, code, headers=(), body=b""):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def handle_any(self):
        self.record()
        m = re.match(r"^/cdn/([^/]+/[^/]+)/([^/?]+)$", self.path)
        if m:
            return self.cdn(m.group(1), m.group(2))
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/([^/?]+)$", self.path)
        if not m:
            return self.reply(404, [("X-Error-Code", "RepoNotFound")], b"not found\n")
        repo, rev, name = m.groups()
        if not os.path.isdir(os.path.join(root, repo)):
            return self.reply(404, [("X-Error-Code", "RepoNotFound")], b"repo not found\n")
        moved = os.path.join(root, repo, ".moved")
        if os.path.exists(moved):
            new = open(moved).read().strip()
            return self.reply(307, [("Location", "/%s/resolve/%s/%s" % (new, rev, name))])
        once = os.path.join(root, repo, ".fail_once")
        if os.path.exists(once):
            os.unlink(once)
            return self.reply(503, body=b"try again\n")
        tok = os.path.join(root, repo, ".token")
        if os.path.exists(tok):
            want = "Bearer " + open(tok).read().strip()
            if self.headers.get("Authorization") != want:
                return self.reply(401, [("X-Error-Code", "GatedRepo")], b"unauthorized\n")
        path = os.path.join(root, repo, name)
        if not os.path.isfile(path):
            return self.reply(404, [("X-Error-Code", "EntryNotFound")], b"entry not found\n")
        data = open(path, "rb").read()
        if name.endswith(LFS):
            sha = hashlib.sha256(data).hexdigest()
            if flag(repo, ".bad_etag") or flag(repo, ".bad_etag." + name):
                sha = hashlib.sha256(b"something else").hexdigest()
            hdrs = [("Location", "http://127.0.0.1:%d/cdn/%s/%s" % (self.server.server_port, repo, name)),
                    ("X-Linked-Size", str(len(data)))]
            if not flag(repo, ".no_etag"):
                hdrs += [("X-Linked-Etag", '"%s"' % sha), ("ETag", '"%s"' % sha)]
            return self.reply(302, hdrs)
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return self.reply(200, [("ETag", '"%s"' % blob)], data)

    def cdn(self, repo, name):
        if self.command == "HEAD":   # signed CDN URLs only allow GET
            return self.reply(403, body=b"method not allowed by signature\n")
        path = os.path.join(root, repo, name)
        if not os.path.isfile(path):
            return self.reply(404)
        data = open(path, "rb").read()
        rng = self.headers.get("Range")
        if rng:
            m = re.match(r"^bytes=(\d+)-(\d*)$", rng)
            if not m:
                return self.reply(416, [("Content-Range", "bytes */%d" % len(data))])
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            if start >= len(data):
                return self.reply(416, [("Content-Range", "bytes */%d" % len(data))])
            end = min(end, len(data) - 1)
            return self.reply(206, [("Content-Range", "bytes %d-%d/%d" % (start, end, len(data)))],
                              data[start:end + 1])
        return self.reply(200, [("Accept-Ranges", "bytes")], data)

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
with open(port_path + ".tmp", "w") as f:
    f.write(str(srv.server_port))
os.rename(port_path + ".tmp", port_path)
srv.serve_forever()
EOF

LOG=$TMP/requests.log
: > "$LOG"
python3 "$TMP/server.py" "$SRV" "$LOG" "$TMP/port" > "$TMP/server.out" 2>&1 &
SERVER_PID=$!
i=0
while [ ! -s "$TMP/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$TMP/port" ] || { echo "server did not start:"; cat "$TMP/server.out"; echo "0 passed, 1 failed"; exit 1; }
HF_ENDPOINT="http://127.0.0.1:$(cat "$TMP/port")"
export HF_ENDPOINT

# Runs the script with a time limit; output in $OUT, status in $RC.
OUT=$TMP/out
fetch() { # $1 = repo, $2 = destination, rest = VAR=value settings for this run
    r=$1 d=$2
    shift 2
    : > "$LOG"
    timeout 60 env "$@" sh "$SCRIPT" "$r" "$d" > "$OUT" 2>&1
    RC=$?
}
show() { sed 's/^/    | /' "$OUT"; }
has() { grep -q -- "$1" "$OUT"; }
logged() { grep -q -- "$1" "$LOG"; }
same_files() { # $1 = dest
    for f in $REQUIRED tokenizer_config.json preprocessor_config.json; do
        cmp -s "$SRC/$f" "$1/$f" || { echo "    $1/$f differs"; return 1; }
    done
}
no_parts() { ! ls "$1"/*.part >/dev/null 2>&1; }

# 1. full download, checksums from the hub
D=$TMP/d1
fetch tiny/model "$D"
check "full download succeeds" [ "$RC" -eq 0 ] || show
check "all files identical to the served ones" same_files "$D"
check "no .part files left" no_parts "$D"
check "sha256 of model.safetensors verified" has "model.safetensors: sha256 ok"
check "sha256 of spiece.model verified" has "spiece.model: sha256 ok"
check "missing optional file skipped" has "special_tokens_map.json: not in tiny/model (optional"
check "CDN URLs never get a HEAD" sh -c "! grep -q '^HEAD /cdn/' '$LOG'"
check "no Authorization header without HF_TOKEN" sh -c "! grep -q 'auth=Bearer' '$LOG'"

# 1b. running again downloads nothing
fetch tiny/model "$D"
check "second run succeeds" [ "$RC" -eq 0 ] || show
check "second run re-verifies instead of downloading" sh -c "! grep -q '^GET ' '$LOG'"
check "second run reports files present" has "model.safetensors: present, sha256 ok"

# 2. resume from a partial .part file
D=$TMP/d2
mkdir -p "$D"
head -c 1000000 "$SRC/model.safetensors" > "$D/model.safetensors.part"
fetch tiny/model "$D"
check "resumed download succeeds" [ "$RC" -eq 0 ] || show
check "resume sent Range: bytes=1000000-" logged "GET /cdn/tiny/model/model.safetensors range=bytes=1000000-"
check "resume announced" has "resuming at byte 1000000"
check "resumed file identical" cmp -s "$SRC/model.safetensors" "$D/model.safetensors"
check "no .part left after resume" no_parts "$D"

# 2b. a complete .part is verified without another download
D=$TMP/d2b
mkdir -p "$D"
cp "$SRC/model.safetensors" "$D/model.safetensors.part"
fetch tiny/model "$D"
check "complete .part accepted" [ "$RC" -eq 0 ] || show
check "complete .part not downloaded again" sh -c "! grep -q '^GET /cdn/tiny/model/model.safetensors' '$LOG'"
check "complete .part moved into place" cmp -s "$SRC/model.safetensors" "$D/model.safetensors"

# 3. checksum mismatch
D=$TMP/d3
fetch bad/model "$D"
check "checksum mismatch fails" [ "$RC" -ne 0 ]
check "checksum mismatch explained" has "checksum mismatch for spiece.model"
check "no final file after mismatch" [ ! -e "$D/spiece.model" ]
check "no .part left after mismatch" no_parts "$D"

# 3b. a corrupt partial download is caught and removed
D=$TMP/d3b
mkdir -p "$D"
head -c 1000000 /dev/zero > "$D/model.safetensors.part"
fetch tiny/model "$D"
check "corrupt resume fails" [ "$RC" -ne 0 ]
check "corrupt resume explained" has "checksum mismatch for model.safetensors"
check "corrupt resume leaves no file" sh -c "[ ! -e '$D/model.safetensors' ] && [ ! -e '$D/model.safetensors.part' ]"

# 4. 404s
D=$TMP/d4
fetch nobody/nothing "$D"
check "unknown repository fails" [ "$RC" -ne 0 ]
check "404 explained" has "HTTP 404 Not Found for $HF_ENDPOINT/nobody/nothing/resolve/main/config.json"
fetch nospiece/model "$D"
check "missing required file fails" [ "$RC" -ne 0 ]
check "missing required file named" has "no spiece.model in nospiece/model"
fetch tiny/model "$TMP/d4b" HF_REVISION=v9   # revision is part of the URL
check "revision used in the URL" logged "HEAD /tiny/model/resolve/v9/config.json"

# 5. HF_TOKEN
D=$TMP/d5
fetch gated/model "$D"
check "gated repo without token fails" [ "$RC" -ne 0 ]
check "401 explained" sh -c "grep -q 'HTTP 401' '$OUT' && grep -q 'HF_TOKEN' '$OUT'"
fetch gated/model "$D" HF_TOKEN=wrong
check "wrong token fails" [ "$RC" -ne 0 ]
check "wrong token explained" has "HF_TOKEN was rejected"
fetch gated/model "$D" HF_TOKEN=sekrit
check "gated repo with token succeeds" [ "$RC" -eq 0 ] || show
check "token sent as Bearer" logged "auth=Bearer sekrit"
check "token sent on HEAD too" logged "^HEAD /gated/model/resolve/main/config.json .*auth=Bearer sekrit"
check "token never printed" sh -c "! grep -q sekrit '$OUT'"
check "gated files identical" same_files "$D"

# 6. no checksum from the server: MG_MODEL_SHA256SUMS
D=$TMP/d6
fetch noetag/model "$D"
check "no sha256 and no SHA256SUMS fails" [ "$RC" -ne 0 ]
check "no sha256 explained" has "MG_MODEL_SHA256SUMS"
(cd "$SRC" && sha256sum -b model.safetensors spiece.model) > "$TMP/SHA256SUMS"
fetch noetag/model "$D" MG_MODEL_SHA256SUMS="$TMP/SHA256SUMS"
check "SHA256SUMS verifies" [ "$RC" -eq 0 ] || show
check "SHA256SUMS files identical" same_files "$D"
D=$TMP/d6b
# an all-zero digest never matches real data (editing one hex digit could leave it unchanged)
awk '{ print "0000000000000000000000000000000000000000000000000000000000000000", $2 }' "$TMP/SHA256SUMS" > "$TMP/BADSUMS"
fetch tiny/model "$D" MG_MODEL_SHA256SUMS="$TMP/BADSUMS"
check "SHA256SUMS mismatch fails" [ "$RC" -ne 0 ]
check "SHA256SUMS overrides the hub" has "differs from $TMP/BADSUMS"
check "no final file after SHA256SUMS mismatch" [ ! -e "$D/spiece.model" ]
fetch tiny/model "$D" MG_MODEL_SHA256SUMS="$TMP/missing"
check "unreadable SHA256SUMS fails" sh -c "[ $RC -ne 0 ] && grep -q 'not a readable file' '$OUT'"

# 7. renamed repository (relative redirect) and a transient 503
D=$TMP/d7
fetch old/model "$D"
check "relative redirect followed" [ "$RC" -eq 0 ] || show
check "redirected files identical" same_files "$D"
D=$TMP/d8
fetch flaky/model "$D"
check "transient 503 retried" [ "$RC" -eq 0 ] || show
check "retry announced" has "retrying"

# 9. a sharded checkpoint: the index and every shard it names, each verified
D=$TMP/d9
fetch sharded/model "$D"
check "sharded download succeeds" [ "$RC" -eq 0 ] || show
check "sharded checkpoint announced" has "fetching the sharded checkpoint"
check "index lists 3 shards" has "$INDEX names 3 shards"
sharded_same() { # $1 = dest
    for f in $SHARDED_FILES; do
        cmp -s "$SRC/$f" "$1/$f" || { echo "    $1/$f differs"; return 1; }
    done
}
check "index and shards identical to the served ones" sharded_same "$D"
for f in $SHARDS; do
    check "sha256 of $f verified" has "$f: sha256 ok"
done
check "no model.safetensors written" [ ! -e "$D/model.safetensors" ]
check "no .part left after a sharded download" no_parts "$D"
fetch sharded/model "$D"
check "sharded second run succeeds" [ "$RC" -eq 0 ] || show
check "sharded second run downloads nothing" sh -c "! grep -q '^GET ' '$LOG'"
check "sharded second run re-verifies the shards" has "model-00003-of-00003.safetensors: present, sha256 ok"

# 9b. a shard resumed from its .part
D=$TMP/d9b
mkdir -p "$D"
head -c 100000 "$SRC/model-00001-of-00003.safetensors" > "$D/model-00001-of-00003.safetensors.part"
fetch sharded/model "$D"
check "sharded resume succeeds" [ "$RC" -eq 0 ] || show
check "shard resume sent Range: bytes=100000-" logged "GET /cdn/sharded/model/model-00001-of-00003.safetensors range=bytes=100000-"
check "resumed shard identical" cmp -s "$SRC/model-00001-of-00003.safetensors" "$D/model-00001-of-00003.safetensors"

# 9c. a shard whose checksum does not match
D=$TMP/d9c
fetch badshard/model "$D"
check "shard checksum mismatch fails" [ "$RC" -ne 0 ]
check "shard checksum mismatch named" has "checksum mismatch for model-00002-of-00003.safetensors"
check "no bad shard left" sh -c "[ ! -e '$D/model-00002-of-00003.safetensors' ] && [ ! -e '$D/model-00002-of-00003.safetensors.part' ]"

# 9d. shards must have a sha256, as model.safetensors must (spiece.model's is pinned)
D=$TMP/d9d
(cd "$SRC" && sha256sum -b spiece.model) > "$TMP/SPIECESUM"
fetch noetagshard/model "$D" MG_MODEL_SHA256SUMS="$TMP/SPIECESUM"
check "shard without sha256 fails" [ "$RC" -ne 0 ]
check "shard without sha256 explained" has "no sha256 for model-00001-of-00003.safetensors"

# 9e. a shard the index names is not in the repository
D=$TMP/d9e
fetch partshard/model "$D"
check "missing shard fails" [ "$RC" -ne 0 ]
check "missing shard named" has "no model-00002-of-00003.safetensors in partshard/model"

# 9f. an index naming a file outside the destination
D=$TMP/d9f/dest
fetch evilshard/model "$D"
check "index naming ../x fails" [ "$RC" -ne 0 ]
check "index naming ../x explained" has "not a plain file name"
check "nothing written outside the destination" [ ! -e "$TMP/d9f/evil.safetensors" ]
check "../x never requested" sh -c "! grep -q 'evil\\.safetensors' '$LOG'"

# 9g. neither model.safetensors nor an index
D=$TMP/d9g
fetch noweights/model "$D"
check "no weights fails" [ "$RC" -ne 0 ]
check "no weights explained" sh -c "grep -q 'model.safetensors: not in noweights/model' '$OUT' && grep -q 'no $INDEX in noweights/model' '$OUT'"

# 8. usage
timeout 10 sh "$SCRIPT" > "$OUT" 2>&1
check "usage error without arguments" sh -c "[ $? -ne 0 ] && grep -q usage '$OUT'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
