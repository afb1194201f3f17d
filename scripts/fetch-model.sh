#!/bin/sh
# Downloads a MusicGen checkpoint from the Hugging Face Hub.
#
#   sh scripts/fetch-model.sh REPO DEST      e.g. facebook/musicgen-small models/musicgen-small
#
# Files come from ${HF_ENDPOINT:-https://huggingface.co}/REPO/resolve/${HF_REVISION:-main}/FILE.
# The weights are model.safetensors or, for a checkpoint save_pretrained split
# into shards (the larger MusicGen models, most fine-tunes), the
# model.safetensors.index.json it wrote and every shard that index names.
# Each file is downloaded into DEST/FILE.part (resumed if a .part is already
# there) and renamed into place only once verified:
#   - model.safetensors, each shard and spiece.model must match a sha256: the
#     one given for them in $MG_MODEL_SHA256SUMS (sha256sum format) or else the
#     one the hub publishes for Git LFS files (X-Linked-Etag / ETag of a HEAD
#     request);
#   - other files are checked against the hub's sha256 when it sends one
#     (LFS files) and otherwise against their announced size.
# A checksum mismatch removes the .part file and fails.
#
# Environment:
#   HF_ENDPOINT, HF_REVISION   hub address and revision (branch, tag or commit)
#   HF_TOKEN                   sent as "Authorization: Bearer ..." (gated/private repos)
#   MG_MODEL_SHA256SUMS        path to a SHA256SUMS file that pins the checksums
#   MG_FETCH_RETRIES           attempts per request for transient failures (3)
#   MG_FETCH_RETRY_DELAY       seconds between attempts (5)
# Needs only POSIX sh, curl and sha256sum. Exits non-zero on any failure.
set -u

REQUIRED_FILES="config.json generation_config.json spiece.model"
OPTIONAL_FILES="tokenizer_config.json special_tokens_map.json preprocessor_config.json"
MUST_VERIFY="model.safetensors spiece.model"

say() { printf 'fetch-model: %s\n' "$*"; }
die() { printf 'fetch-model: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || { echo "usage: sh $0 REPO DEST   (e.g. facebook/musicgen-small models/musicgen-small)" >&2; exit 2; }
REPO=$1
DEST=$2
ENDPOINT=${HF_ENDPOINT:-https://huggingface.co}
ENDPOINT=${ENDPOINT%/}
REVISION=${HF_REVISION:-main}
RETRIES=${MG_FETCH_RETRIES:-3}
RETRY_DELAY=${MG_FETCH_RETRY_DELAY:-5}
SUMS=${MG_MODEL_SHA256SUMS:-}

case $REPO in
    */*) ;;
    *) die "repository \"$REPO\" should look like owner/name" ;;
esac
command -v curl >/dev/null 2>&1 || die "curl is not installed"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is not installed"
if [ -n "$SUMS" ] && [ ! -r "$SUMS" ]; then
    die "MG_MODEL_SHA256SUMS=$SUMS is not a readable file"
fi
mkdir -p "$DEST" || die "cannot create $DEST"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fetch-model.XXXXXX") || die "cannot create a temporary folder"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# The token goes to curl through a header file so it never shows in `ps`.
# curl sends custom headers only to the original host on redirects, so the
# token does not leak to the CDN that serves the LFS files.
AUTH_FILE=/dev/null
if [ -n "${HF_TOKEN:-}" ]; then
    AUTH_FILE=$TMP/auth
    (umask 077 && printf 'Authorization: Bearer %s\n' "$HF_TOKEN" > "$AUTH_FILE") ||
        die "cannot write $AUTH_FILE"
    say "using HF_TOKEN for authorization"
fi

if [ -t 2 ]; then PROGRESS=--progress-bar; else PROGRESS=-sS; fi

file_size() { echo $(( $(wc -c < "$1") )); }

is_sha256() {
    [ ${#1} -eq 64 ] || return 1
    case $1 in *[!0-9a-f]*) return 1 ;; esac
    return 0
}

# Explains an HTTP failure status for FILE and exits.
http_fail() { # $1 = status, $2 = file, $3 = url
    case $1 in
        401) if [ -n "${HF_TOKEN:-}" ]; then
                 die "HTTP 401 Unauthorized for $3: HF_TOKEN was rejected (check it has read access to $REPO)"
             else
                 die "HTTP 401 Unauthorized for $3: $REPO does not exist, is private, or is gated; set HF_TOKEN to a token with access"
             fi ;;
        403) die "HTTP 403 Forbidden for $3: accept the terms of $REPO on its hub page, or check HF_TOKEN's permissions" ;;
        404) die "HTTP 404 Not Found for $3: no $2 in $REPO at revision $REVISION (check the repository name and HF_REVISION)" ;;
        000) die "no HTTP response from $3" ;;
        *)   die "HTTP $1 from $3" ;;
    esac
}

transient() { # status worth retrying: no response, 408, 429, 5xx
    case $1 in 000|408|429|5??) return 0 ;; esac
    return 1
}

# HEAD request for metadata, like huggingface_hub's get_hf_file_metadata: it
# does not follow absolute redirects (LFS files redirect to a CDN whose signed
# URLs refuse HEAD, and the redirect itself carries X-Linked-Etag and
# X-Linked-Size) but follows relative ones (renamed repositories).
# Sets H_STATUS, H_SHA256 (empty unless the etag is a sha256), H_SIZE.
head_file() { # $1 = url
    url=$1
    hops=0
    while :; do
        attempt=1
        while :; do
            H_STATUS=$(curl -sS -I -o /dev/null -D "$TMP/head" -w '%{http_code}' \
                --connect-timeout 30 --max-time 120 -H @"$AUTH_FILE" \
                -H 'Accept-Encoding: identity' "$url")
            rc=$?
            [ $rc -eq 0 ] && ! transient "$H_STATUS" && break
            [ "$attempt" -ge "$RETRIES" ] && {
                [ $rc -ne 0 ] && die "cannot reach $url (curl exit status $rc)"
                http_fail "$H_STATUS" "$NAME" "$url"
            }
            say "HEAD $url failed (curl $rc, HTTP $H_STATUS); retrying in ${RETRY_DELAY}s"
            sleep "$RETRY_DELAY"
            attempt=$((attempt + 1))
        done
        # Header names are case-insensitive; values lose their CR.
        H_LETAG='' H_ETAG='' H_LSIZE='' H_CLEN='' H_LOCATION=''
        # Values are printed single-quoted for eval, so drop quotes and
        # control characters from them first.
        eval "$(tr -d '\r' < "$TMP/head" | LC_ALL=C awk '
            function out(k, v) { gsub(/[^ -&(-~]/, "", v); printf "%s=\047%s\047\n", k, v }
            { i = index($0, ":"); if (i == 0) next
              k = tolower(substr($0, 1, i - 1)); v = substr($0, i + 1); sub(/^[ \t]+/, "", v)
              if (k == "x-linked-etag") le = v; else if (k == "etag") et = v
              else if (k == "x-linked-size") ls = v; else if (k == "content-length") cl = v
              else if (k == "location") lo = v }
            END { out("H_LETAG", le); out("H_ETAG", et); out("H_LSIZE", ls); out("H_CLEN", cl)
                  out("H_LOCATION", lo) }')"
        case $H_STATUS in
            30[1278])
                if [ -z "$H_LETAG" ] && [ "$hops" -lt 5 ]; then
                    case $H_LOCATION in /*)
                        origin=$(printf '%s\n' "$url" | sed -n 's|^\([A-Za-z][A-Za-z0-9+.-]*://[^/]*\).*|\1|p')
                        url=$origin$H_LOCATION
                        hops=$((hops + 1))
                        continue ;;
                    esac
                fi ;;
        esac
        break
    done
    etag=${H_LETAG:-$H_ETAG}
    etag=${etag#W/}
    etag=$(printf '%s' "$etag" | tr -d '"' | tr 'A-F' 'a-f')
    H_SHA256=
    is_sha256 "$etag" && H_SHA256=$etag
    H_SIZE=$H_LSIZE
    case $H_STATUS in 2??) [ -z "$H_SIZE" ] && H_SIZE=$H_CLEN ;; esac
    case $H_SIZE in ''|*[!0-9]*) H_SIZE= ;; esac
}

# sha256 for $1 listed in $SUMS ("HASH  NAME" or "HASH *NAME", any path).
pinned_sha256() {
    [ -n "$SUMS" ] || return 0
    awk -v n="$1" '{ f = $2; sub(/^\*/, "", f); sub(/.*\//, "", f)
                     if (f == n) { print tolower($1); exit } }' "$SUMS"
}

# Downloads url into part, resuming; retries transient failures.
download() { # $1 = url, $2 = part file, $3 = expected size or empty
    attempt=1
    while :; do
        have=0
        [ -f "$2" ] && have=$(file_size "$2")
        if [ -n "$3" ] && [ "$have" -gt "$3" ]; then
            say "$2 is larger than the $3 bytes expected; starting over"
            rm -f "$2"
            have=0
        fi
        if [ -z "$3" ] && [ "$have" -gt 0 ]; then
            # Without a size a finished .part cannot be told from a partial
            # one, and resuming a finished file draws a 416 from the server.
            say "$2: size unknown, so not resuming; starting over"
            rm -f "$2"
            have=0
        fi
        if [ -n "$3" ] && [ "$have" -eq "$3" ]; then
            say "$2 already has all $3 bytes"
            return 0
        fi
        if [ "$have" -gt 0 ]; then
            say "GET $1 -> $2 (resuming at byte $have)"
        else
            say "GET $1 -> $2${3:+ ($3 bytes)}"
        fi
        status=$(curl $PROGRESS -f -L --max-redirs 10 -C - -o "$2" -w '%{http_code}' \
            --connect-timeout 30 --speed-limit 1024 --speed-time 60 \
            -H @"$AUTH_FILE" "$1")
        rc=$?
        [ $rc -eq 0 ] && return 0
        case $rc in
            33) say "the server cannot resume $2; starting over"
                rm -f "$2" ;;
            22) case $status in
                    416) say "the server refused the resume range for $2; starting over"
                         rm -f "$2" ;;
                    *) transient "$status" || http_fail "$status" "$NAME" "$1" ;;
                esac ;;
        esac
        [ "$attempt" -ge "$RETRIES" ] && die "downloading $1 failed after $attempt attempts (curl exit status $rc, HTTP $status)"
        say "download failed (curl $rc, HTTP $status); retrying in ${RETRY_DELAY}s"
        sleep "$RETRY_DELAY"
        attempt=$((attempt + 1))
    done
}

fetch() { # $1 = file name, $2 = required, optional, or try (a 404 returns 1, silently)
    NAME=$1
    url=$ENDPOINT/$REPO/resolve/$REVISION/$NAME
    final=$DEST/$NAME
    part=$final.part

    say "HEAD $url"
    head_file "$url"
    case $H_STATUS in
        2??|3??) ;;
        404) case $2 in
                 optional) say "$NAME: not in $REPO (optional, skipped)"; return 0 ;;
                 try) return 1 ;;
             esac
             http_fail 404 "$NAME" "$url" ;;
        *) http_fail "$H_STATUS" "$NAME" "$url" ;;
    esac

    want=$(pinned_sha256 "$NAME")
    if [ -n "$want" ]; then
        is_sha256 "$want" || die "$SUMS: bad sha256 \"$want\" for $NAME"
        if [ -n "$H_SHA256" ] && [ "$H_SHA256" != "$want" ]; then
            say "warning: the hub's sha256 for $NAME ($H_SHA256) differs from $SUMS; checking against $SUMS"
        fi
    else
        want=$H_SHA256
    fi
    case " $MUST_VERIFY " in
        *" $NAME "*) [ -n "$want" ] || die "no sha256 for $NAME: $url sent no sha256 X-Linked-Etag/ETag; pin one with MG_MODEL_SHA256SUMS=path" ;;
    esac

    if [ -f "$final" ]; then
        if [ -n "$want" ]; then
            got=$(sha256sum "$final" | cut -d ' ' -f 1)
            if [ "$got" = "$want" ]; then
                say "$final: present, sha256 ok"
                return 0
            fi
            say "$final: present but its sha256 differs; downloading again"
        elif [ -n "$H_SIZE" ] && [ "$(file_size "$final")" -eq "$H_SIZE" ]; then
            say "$final: present, size ok"
            return 0
        fi
    fi

    download "$url" "$part" "$H_SIZE"

    if [ -n "$want" ]; then
        got=$(sha256sum "$part" | cut -d ' ' -f 1) || die "cannot hash $part"
        if [ "$got" != "$want" ]; then
            rm -f "$part"
            die "checksum mismatch for $NAME: expected sha256 $want, got $got (download removed; run again to retry)"
        fi
        say "$NAME: sha256 ok ($want)"
    elif [ -n "$H_SIZE" ]; then
        got=$(file_size "$part")
        if [ "$got" -ne "$H_SIZE" ]; then
            rm -f "$part"
            die "size mismatch for $NAME: expected $H_SIZE bytes, got $got (download removed; run again to retry)"
        fi
        say "$NAME: size ok ($got bytes; the hub publishes no sha256 for non-LFS files)"
    else
        say "$NAME: no checksum or size to verify against"
    fi
    mv -f "$part" "$final" || die "cannot move $part to $final"
}

INDEX=model.safetensors.index.json

# The shard file names the index's weight_map maps tensors to, once each.
# Only plain file names are accepted: the index decides where files are
# written, and a name like ../x would write outside DEST.
index_shards() { # $1 = index file
    tr -d '\n\r' < "$1" | sed -n 's/.*"weight_map"[[:space:]]*:[[:space:]]*{\([^}]*\)}.*/\1/p' |
        tr ',' '\n' | sed -n 's/^[[:space:]]*"[^"]*"[[:space:]]*:[[:space:]]*"\([^"]*\)"[[:space:]]*$/\1/p' |
        sort -u
}

# model.safetensors when the repository has it (as transformers prefers it),
# else the index and every shard it names, each verified like the single file.
fetch_weights() {
    fetch model.safetensors try && return 0
    say "model.safetensors: not in $REPO; fetching the sharded checkpoint ($INDEX)"
    fetch "$INDEX" required
    shards=$(index_shards "$DEST/$INDEX")
    [ -n "$shards" ] || die "$DEST/$INDEX names no shard (expected a weight_map of tensor: file)"
    bad=$(printf '%s\n' "$shards" | grep -v '^[A-Za-z0-9][A-Za-z0-9._-]*$' | head -n 1)
    [ -z "$bad" ] || die "$INDEX names shard \"$bad\", which is not a plain file name in the model folder"
    say "$INDEX names $(echo "$shards" | wc -l | tr -d ' ') shards"
    for s in $shards; do
        MUST_VERIFY="$MUST_VERIFY $s"
        fetch "$s" required
    done
}

say "fetching $REPO (revision $REVISION) from $ENDPOINT into $DEST"
for f in $REQUIRED_FILES; do fetch "$f" required; done
fetch_weights
for f in $OPTIONAL_FILES; do fetch "$f" optional; done
say "done: $DEST"
