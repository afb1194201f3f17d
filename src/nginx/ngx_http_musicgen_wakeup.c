/* The engine's threads wake the worker's event loop through a descriptor of
 * our own: an eventfd (a pipe where nginx found none) watched by a
 * connection taken from the worker's pool. nginx's ngx_notify is not free:
 * its thread pools use it. Writing never blocks: an eventfd's counter or a
 * pipe that is already readable is wake-up enough. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_wakeup.h"

#if (NGX_HAVE_EVENTFD) && (NGX_HAVE_SYS_EVENTFD_H)
#include <sys/eventfd.h>
#define NGX_HTTP_MUSICGEN_EVENTFD  1
#else
#define NGX_HTTP_MUSICGEN_EVENTFD  0
#endif

struct ngx_http_musicgen_wakeup_s {
    ngx_connection_t  *c;            /* its fd: the eventfd, or the pipe's read end */
    int                write_fd;     /* the same eventfd, or the pipe's write end */
    void             (*handler)(void *data);
    void              *data;
};

/* Event loop: empties the descriptor, then runs the handler, which looks at
 * every job (a wake-up says something happened, not to whom). */
static void
ngx_http_musicgen_wakeup_read(ngx_event_t *ev)
{
    ngx_connection_t            *c = ev->data;
    ngx_http_musicgen_wakeup_t  *w = c->data;
    u_char                       buf[64];
    ssize_t                      n;

    do {
        n = read(c->fd, buf, sizeof(buf));
    } while (n > 0 || (n == -1 && ngx_errno == NGX_EINTR));
    w->handler(w->data);
}

void
ngx_http_musicgen_wakeup_signal(void *wakeup)
{
    ngx_http_musicgen_wakeup_t  *w = wakeup;
    ssize_t                      n;
#if (NGX_HTTP_MUSICGEN_EVENTFD)
    uint64_t                     one = 1;

    do {
        n = write(w->write_fd, &one, sizeof(one));
    } while (n == -1 && errno == EINTR);
#else
    u_char                       one = 1;

    do {
        n = write(w->write_fd, &one, 1);
    } while (n == -1 && errno == EINTR);
#endif
    /* EAGAIN: the counter or the pipe is full, so the loop will wake anyway */
    (void) n;
}

ngx_http_musicgen_wakeup_t *
ngx_http_musicgen_wakeup_open(ngx_cycle_t *cycle, void (*handler)(void *data), void *data)
{
    ngx_http_musicgen_wakeup_t  *w;
    ngx_connection_t            *c;
    ngx_event_t                 *rev;
    int                          fds[2];

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_http_musicgen_wakeup_t));
    if (w == NULL) {
        return NULL;
    }
#if (NGX_HTTP_MUSICGEN_EVENTFD)
    fds[0] = eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC);
    if (fds[0] == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno, "musicgen: eventfd() failed");
        return NULL;
    }
    fds[1] = fds[0];
#else
    if (pipe(fds) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno, "musicgen: pipe() failed");
        return NULL;
    }
    if (ngx_nonblocking(fds[0]) == -1 || ngx_nonblocking(fds[1]) == -1
        || fcntl(fds[0], F_SETFD, FD_CLOEXEC) == -1 || fcntl(fds[1], F_SETFD, FD_CLOEXEC) == -1)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno, "musicgen: pipe setup failed");
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
#endif
    c = ngx_get_connection(fds[0], cycle->log);
    if (c == NULL) {
        close(fds[0]);
        if (fds[1] != fds[0]) {
            close(fds[1]);
        }
        return NULL;
    }
    w->c = c;
    w->write_fd = fds[1];
    w->handler = handler;
    w->data = data;
    c->data = w;
    rev = c->read;
    rev->handler = ngx_http_musicgen_wakeup_read;
    rev->log = cycle->log;
    /* edge-triggered where the loop is: the handler always empties the fd */
    if (ngx_add_event(rev, NGX_READ_EVENT,
                      (ngx_event_flags & NGX_USE_CLEAR_EVENT) ? NGX_CLEAR_EVENT : NGX_LEVEL_EVENT)
        != NGX_OK)
    {
        ngx_http_musicgen_wakeup_close(w);
        return NULL;
    }
    return w;
}

void
ngx_http_musicgen_wakeup_close(ngx_http_musicgen_wakeup_t *w)
{
    if (w == NULL || w->c == NULL) {
        return;
    }
    if (w->write_fd != w->c->fd) {
        close(w->write_fd);
    }
    w->write_fd = -1;
    ngx_close_connection(w->c);
    w->c = NULL;
}
