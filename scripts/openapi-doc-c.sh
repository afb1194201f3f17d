#!/bin/sh
# Writes the C source that compiles docs/openapi.json into the nginx module
# (musicgen_openapi serves it): the document as one string literal, its
# length, and a strong ETag from its CRC (POSIX cksum), so the document a
# module serves is always the one of the API it was built with.
# Usage: scripts/openapi-doc-c.sh docs/openapi.json OUT.c
# Run by the module's config (nginx's configure) and by make when the
# document changes.
set -e
in=$1 out=$2
crc=$(cksum < "$in" | cut -d' ' -f1)
{
    echo "/* Generated from $(basename "$in") by scripts/openapi-doc-c.sh: edit the document, not this. */"
    echo '#include <stddef.h>'
    echo 'extern const char ngx_http_musicgen_openapi_doc[];'
    echo 'extern const size_t ngx_http_musicgen_openapi_doc_len;'
    echo 'extern const char ngx_http_musicgen_openapi_etag[];'
    printf 'const char ngx_http_musicgen_openapi_etag[] = "\\"mg-openapi-%08x\\"";\n' "$crc"
    echo 'const char ngx_http_musicgen_openapi_doc[] ='
    # each line a literal: backslashes and quotes escaped, the newline kept
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$/\\n"/' "$in"
    echo ';'
    echo 'const size_t ngx_http_musicgen_openapi_doc_len = sizeof(ngx_http_musicgen_openapi_doc) - 1;'
} > "$out.tmp"
mv "$out.tmp" "$out"
