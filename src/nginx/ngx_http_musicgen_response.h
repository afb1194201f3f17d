/* Responses: headers, bodies, errors and caching (ngx_http_musicgen_response.c). */
#ifndef _NGX_HTTP_MUSICGEN_RESPONSE_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_RESPONSE_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

/* key and value must outlive the request (literals or pool memory). */
ngx_int_t ngx_http_musicgen_add_header(ngx_http_request_t *r, const char *key,
    const char *value);
/* status, Content-Type and body (copied; NULL/0: headers only), with CORS. */
ngx_int_t ngx_http_musicgen_send(ngx_http_request_t *r, ngx_uint_t status, const char *type,
    const u_char *body, size_t len);
/* 200 with a complete audio file and its cache headers; Range requests
 * are answered from it (206/416). */
ngx_int_t ngx_http_musicgen_send_audio(ngx_http_request_t *r, const char *etag,
    mg_audio_format format, const u_char *audio, size_t len);
/* A HEAD's 200: the GET's headers without the body; length -1: not known. */
ngx_int_t ngx_http_musicgen_send_audio_head(ngx_http_request_t *r, const char *etag,
    mg_audio_format format, off_t length);
/* The 200 header of a streamed raw response (Accept-Ranges: none; length
 * -1: chunked): NGX_OK, or NGX_ERROR. */
ngx_int_t ngx_http_musicgen_send_stream_header(ngx_http_request_t *r, const char *etag,
    mg_audio_format format, off_t length);
/* {"success": false, "error": msg, "field": field} (field NULL: none). */
ngx_int_t ngx_http_musicgen_error(ngx_http_request_t *r, ngx_uint_t status, const char *msg,
    const char *field);
/* etag "" (not cacheable): no-store; else the ETag, cacheable for a year. */
ngx_int_t ngx_http_musicgen_cache_headers(ngx_http_request_t *r, const char *etag);
/* A raw response's account of the audio prompt its clip begins with (the
 * JSON's prompt_seconds and prompt_trimmed_seconds): X-Musicgen-Prompt-Seconds
 * and, when part was cut to fit a window, X-Musicgen-Prompt-Trimmed-Seconds;
 * nothing without an audio_prompt. */
ngx_int_t ngx_http_musicgen_prompt_headers(ngx_http_request_t *r, const mg_model *m,
    const mg_request *req, const mg_job_settings *set);
int ngx_http_musicgen_etag_matches(ngx_http_request_t *r, const char *etag);

#endif /* _NGX_HTTP_MUSICGEN_RESPONSE_H_INCLUDED_ */
