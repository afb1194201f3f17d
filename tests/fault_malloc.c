/* LD_PRELOAD fault injection for tests/nginx_faults.sh: with
 * MG_FAULT_MALLOC_NTH=N in the environment when the process starts, the N-th
 * malloc/calloc/realloc/posix_memalign made off the process's main thread
 * fails (once). In an nginx worker only generation runs off the main thread
 * (the thread pool, the engine's scheduler and CPU workers), so N picks an
 * allocation inside the first job. A test library: nothing in the module or
 * the engine knows about it, and production pays nothing for it. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);

/* Test-only process state, read once at load (nginx clears the environment
 * of its workers, which inherit these values across fork). */
static long fail_nth;
static atomic_long off_main_count;

__attribute__((constructor)) static void fault_init(void)
{
    const char *v = getenv("MG_FAULT_MALLOC_NTH");
    fail_nth = v ? atol(v) : 0;
}

static int should_fail(void)
{
    if (fail_nth <= 0 || gettid() == getpid())
        return 0;
    return atomic_fetch_add(&off_main_count, 1) + 1 == fail_nth;
}

void *malloc(size_t n) { return should_fail() ? NULL : __libc_malloc(n); }
void *calloc(size_t n, size_t size) { return should_fail() ? NULL : __libc_calloc(n, size); }
void *realloc(void *p, size_t n) { return should_fail() ? NULL : __libc_realloc(p, n); }

int posix_memalign(void **out, size_t align, size_t n)
{
    if (should_fail())
        return ENOMEM;
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
