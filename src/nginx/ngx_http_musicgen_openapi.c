/* musicgen_openapi: the location that serves the endpoint's OpenAPI 3.1
 * document (docs/openapi.json). The document is compiled into the module
 * (scripts/openapi-doc-c.sh, run by config) rather than read from a file at
 * nginx -t: a module then always describes the API it implements, and there
 * is no path to configure or to drift from the installed version. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_openapi.h"

/* generated from docs/openapi.json */
extern const char    ngx_http_musicgen_openapi_doc[];
extern const size_t  ngx_http_musicgen_openapi_doc_len;
extern const char    ngx_http_musicgen_openapi_etag[];

/* GET or HEAD: the document with its ETag (the CRC of its bytes); nginx's
 * not-modified filter answers a matching If-None-Match with 304. */
static ngx_int_t
ngx_http_musicgen_openapi_handler(ngx_http_request_t *r)
{
    ngx_table_elt_t  *etag, *cc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_int_t         rc;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    etag = ngx_list_push(&r->headers_out.headers);
    if (etag == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    etag->hash = 1;
    ngx_str_set(&etag->key, "ETag");
    etag->value.data = (u_char *) ngx_http_musicgen_openapi_etag;
    etag->value.len = ngx_strlen(ngx_http_musicgen_openapi_etag);
    r->headers_out.etag = etag;
    /* a client may keep it, and asks again (cheaply, with the ETag) after a
     * reload that may have brought a new module */
    cc = ngx_list_push(&r->headers_out.headers);
    if (cc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    cc->hash = 1;
    ngx_str_set(&cc->key, "Cache-Control");
    ngx_str_set(&cc->value, "no-cache");

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = (off_t) ngx_http_musicgen_openapi_doc_len;
    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }
    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }
    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    /* the document itself, read-only: never copied */
    b->pos = (u_char *) ngx_http_musicgen_openapi_doc;
    b->last = b->pos + ngx_http_musicgen_openapi_doc_len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    out.buf = b;
    out.next = NULL;
    return ngx_http_output_filter(r, &out);
}

char *
ngx_http_musicgen_openapi(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    if (clcf->handler != NULL) {
        return "is duplicate, or the location already has a content handler";
    }
    clcf->handler = ngx_http_musicgen_openapi_handler;
    return NGX_CONF_OK;
}
