/* What every response carries: the CORS header from the allow-list, the
 * body copied into the request's pool, errors as the engine's JSON, and
 * the cache headers of a seeded (reproducible) clip. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_response.h"

/* Access-Control-Allow-Origin from the allow-list, on every response. */
static ngx_int_t
ngx_http_musicgen_cors(ngx_http_request_t *r, ngx_http_musicgen_loc_conf_t *lcf)
{
    ngx_str_t        *allowed, origin = ngx_null_string, *match = NULL;
    ngx_table_elt_t  *h;
    ngx_list_part_t  *part;
    ngx_uint_t        i, any = 0;

    if (lcf->cors == NULL) {
        return NGX_OK;
    }
    part = &r->headers_in.headers.part;
    h = part->elts;
    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }
        if (h[i].key.len == 6 && ngx_strncasecmp(h[i].key.data, (u_char *) "origin", 6) == 0) {
            origin = h[i].value;
        }
    }
    allowed = lcf->cors->elts;
    for (i = 0; i < lcf->cors->nelts; i++) {
        if (allowed[i].len == 1 && allowed[i].data[0] == '*') {
            any = 1;
        } else if (origin.len && origin.len == allowed[i].len
                   && ngx_strncasecmp(origin.data, allowed[i].data, origin.len) == 0) {
            match = &allowed[i];
        }
    }
    if (!any) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }
        h->hash = 1;
        ngx_str_set(&h->key, "Vary");
        ngx_str_set(&h->value, "Origin");
    }
    if (!any && !match) {
        return NGX_OK;
    }
    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    h->hash = 1;
    ngx_str_set(&h->key, "Access-Control-Allow-Origin");
    if (any) {
        ngx_str_set(&h->value, "*");
    } else {
        h->value = *match; /* the configured origin: never bytes the client sent */
    }
    /* a page's script may read what ranges, caching and back-pressure say
     * (these are not CORS-safelisted response headers) */
    return ngx_http_musicgen_add_header(r, "Access-Control-Expose-Headers",
                                        "Content-Range, Accept-Ranges, ETag, Retry-After, "
                                        "X-Musicgen-Prompt-Seconds, "
                                        "X-Musicgen-Prompt-Trimmed-Seconds");
}

ngx_int_t
ngx_http_musicgen_add_header(ngx_http_request_t *r, const char *key, const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);
    return NGX_OK;
}

/* A number of seconds as a header's value, in r's pool. */
static ngx_int_t
ngx_http_musicgen_seconds_header(ngx_http_request_t *r, const char *key, double seconds)
{
    u_char  *v, *end;

    v = ngx_pnalloc(r->pool, NGX_INT64_LEN + 8);
    if (v == NULL) {
        return NGX_ERROR;
    }
    end = ngx_sprintf(v, "%.3f", seconds);
    *end = '\0';
    return ngx_http_musicgen_add_header(r, key, (const char *) v);
}

ngx_int_t
ngx_http_musicgen_prompt_headers(ngx_http_request_t *r, const mg_model *m,
    const mg_request *req, const mg_job_settings *set)
{
    const mg_config      *c = mg_model_config(m);
    mg_prompt_audio_fit   fit;
    mg_error              err;

    ngx_memzero(&err, sizeof(err));
    if (!req->audio_prompt.samples) {
        return NGX_OK;
    }
    if (mg_job_prompt_fit(m, req, set, &fit, &err) != MG_OK) {
        /* the job (or the HEAD's size) was refused for it already */
        return NGX_ERROR;
    }
    /* as the JSON's: the clip's first seconds, the audio cut before them */
    if (ngx_http_musicgen_seconds_header(r, "X-Musicgen-Prompt-Seconds",
                                         (double) fit.frames * c->hop / c->sample_rate)
        != NGX_OK)
    {
        return NGX_ERROR;
    }
    if (fit.first_sample == 0) {
        return NGX_OK;
    }
    return ngx_http_musicgen_seconds_header(r, "X-Musicgen-Prompt-Trimmed-Seconds",
                                            (double) fit.first_sample / c->sample_rate);
}

/* The header every response starts from: CORS, status, type and length
 * (-1: not known, or none for a 304). */
static ngx_int_t
ngx_http_musicgen_header(ngx_http_request_t *r, ngx_uint_t status, const char *type,
    off_t length)
{
    ngx_http_musicgen_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    if (ngx_http_musicgen_cors(r, lcf) != NGX_OK) {
        return NGX_ERROR;
    }
    r->headers_out.status = status;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = length;
    return NGX_OK;
}

/* Sends body (copied into the request pool) with a status and type. */
ngx_int_t
ngx_http_musicgen_send(ngx_http_request_t *r, ngx_uint_t status, const char *type,
    const u_char *body, size_t len)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;
    ngx_int_t     rc;

    if (ngx_http_musicgen_header(r, status, type,
                                 status == NGX_HTTP_NOT_MODIFIED ? -1 : (off_t) len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    if (len == 0 || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }
    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    b->last = ngx_cpymem(b->pos, body, len);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }
    out.buf = b;
    out.next = NULL;
    return ngx_http_output_filter(r, &out);
}

/* A complete audio file: nginx's range filter answers Range requests from
 * it (206 and Content-Range, 416, multipart; If-Range against the ETag) and
 * says Accept-Ranges: bytes otherwise. It can because the body is one
 * in-memory buffer with last_buf and the response has a Content-Length.
 * Browsers need this: Safari plays an <audio> source only from 206 answers. */
ngx_int_t
ngx_http_musicgen_send_audio(ngx_http_request_t *r, const char *etag, mg_audio_format format,
    const u_char *audio, size_t len)
{
    if (ngx_http_musicgen_cache_headers(r, etag) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    r->allow_ranges = 1;
    return ngx_http_musicgen_send(r, NGX_HTTP_OK, mg_audio_mime(format), audio, len);
}

/* What a HEAD learns without generating: the headers the GET would send,
 * with Content-Length when the format's size is known up front (length >= 0;
 * else none), and Accept-Ranges: bytes either way, since the GET serves
 * ranges. With a length the range filter adds Accept-Ranges itself (or
 * answers a Range as the GET would); without one it passes the response
 * by, so the header is added here. */
ngx_int_t
ngx_http_musicgen_send_audio_head(ngx_http_request_t *r, const char *etag,
    mg_audio_format format, off_t length)
{
    if (ngx_http_musicgen_cache_headers(r, etag) != NGX_OK
        || (length < 0 && ngx_http_musicgen_add_header(r, "Accept-Ranges", "bytes") != NGX_OK)
        || ngx_http_musicgen_header(r, NGX_HTTP_OK, mg_audio_mime(format), length) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    r->allow_ranges = 1;
    r->header_only = 1;
    return ngx_http_send_header(r);
}

/* A streamed response's header: the body follows as it is encoded, so no
 * ranges (Accept-Ranges: none; a Range request is answered from the
 * complete file instead), with the length when it is known up front (WAV),
 * else chunked. */
ngx_int_t
ngx_http_musicgen_send_stream_header(ngx_http_request_t *r, const char *etag,
    mg_audio_format format, off_t length)
{
    ngx_int_t  rc;

    if (ngx_http_musicgen_cache_headers(r, etag) != NGX_OK
        || ngx_http_musicgen_add_header(r, "Accept-Ranges", "none") != NGX_OK
        || ngx_http_musicgen_header(r, NGX_HTTP_OK, mg_audio_mime(format), length) != NGX_OK)
    {
        return NGX_ERROR;
    }
    rc = ngx_http_send_header(r);
    return rc == NGX_ERROR || rc > NGX_OK ? NGX_ERROR : NGX_OK;
}

/* {"success": false, "error": msg, "field": field} */
ngx_int_t
ngx_http_musicgen_error(ngx_http_request_t *r, ngx_uint_t status, const char *msg,
    const char *field)
{
    char      *text;
    size_t     len = 0;
    ngx_int_t  rc;

    text = mg_job_error_json(msg, field, &len);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    rc = ngx_http_musicgen_send(r, status, "application/json", (u_char *) text, len);
    free(text);
    return rc;
}

/* A seeded request is a pure function of its URL and the model: cacheable
 * forever under a strong ETag. Anything else must not be cached. */
ngx_int_t
ngx_http_musicgen_cache_headers(ngx_http_request_t *r, const char *etag)
{
    if (etag[0] == '\0') {
        return ngx_http_musicgen_add_header(r, "Cache-Control", "no-store");
    }
    if (ngx_http_musicgen_add_header(r, "ETag", etag) != NGX_OK) {
        return NGX_ERROR;
    }
    /* the element just added, where nginx's filters look for the ETag
     * (If-Range in the range filter, If-Match in not_modified) */
    r->headers_out.etag = (ngx_table_elt_t *) r->headers_out.headers.last->elts
                          + r->headers_out.headers.last->nelts - 1;
    return ngx_http_musicgen_add_header(r, "Cache-Control", "public, max-age=31536000, immutable");
}

/* If-None-Match: "*" or a list containing our (strong) ETag. */
int
ngx_http_musicgen_etag_matches(ngx_http_request_t *r, const char *etag)
{
    ngx_str_t  *v;

    if (r->headers_in.if_none_match == NULL) {
        return 0;
    }
    v = &r->headers_in.if_none_match->value;
    if (v->len == 1 && v->data[0] == '*') {
        return 1;
    }
    return ngx_strlcasestrn(v->data, v->data + v->len, (u_char *) etag,
                            ngx_strlen(etag) - 1) != NULL;
}
