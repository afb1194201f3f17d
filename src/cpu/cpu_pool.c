#include "cpu/cpu_pool.h"

#include <sched.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long an idle worker keeps spinning before it sleeps: longer than the
 * gaps between the ops of a decode step, short enough that an idle server
 * does not burn a core. */
#define SPIN_NS 300000

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void run_pieces(mg_cpu_pool *p)
{
    for (;;) {
        int64_t i0 = atomic_fetch_add_explicit(&p->next, p->grain, memory_order_relaxed);
        if (i0 >= p->n)
            return;
        p->fn(p->ctx, i0, i0 + p->grain < p->n ? i0 + p->grain : p->n);
    }
}

/* Waits until the generation moves past seen; returns the new one. */
static uint64_t wait_generation(mg_cpu_pool *p, uint64_t seen)
{
    uint64_t g;
    int64_t start = 0;
    for (unsigned spins = 0;; spins++) {
        if ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) != seen)
            return g;
        CPU_RELAX();
        if ((spins & 255) == 255) {
            int64_t t = now_ns();
            if (!start)
                start = t;
            else if (t - start > SPIN_NS)
                break;
        }
    }
    /* sleepers is raised before generation is re-read (both seq_cst), and the
     * publisher bumps generation before reading sleepers: one of the two
     * always sees the other, so no wake-up is lost */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while ((g = atomic_load(&p->generation)) == seen)
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

/* Workers and the caller take pieces of each job until none are left. A
 * worker joins the job unless the caller has closed it (it finished every
 * piece while this worker was not running): then it keeps out, and never
 * reads the job, which the caller may already be replacing. */
static void *pool_worker(void *arg)
{
    mg_cpu_pool *p = arg;
    uint64_t seen = 0;
    for (;;) {
        seen = wait_generation(p, seen);
        if (atomic_load(&p->stop))
            break;
        if (atomic_fetch_add(&p->joined, 1) & MG_POOL_CLOSED)
            continue;
        run_pieces(p);
        atomic_fetch_add(&p->done, 1);
    }
    return NULL;
}

static void publish(mg_cpu_pool *p)
{
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

void mg_cpu_pool_run(mg_cpu_pool *p, int64_t n, int64_t min_per_thread, mg_cpu_task_fn fn,
                     void *ctx)
{
    int64_t min = min_per_thread > 0 ? min_per_thread : 1;
    if (n < 2 * min || p->n_workers == 0) {
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    /* ~8 pieces per thread balance well and cost little to hand out */
    int64_t grain = n / (8 * (int64_t)(p->n_workers + 1));
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain > 0 ? grain : 1;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store(&p->done, 0);
    atomic_store(&p->joined, 0); /* opens the job (seq_cst: after fn, ctx, n, next) */
    publish(p);
    run_pieces(p);
    /* no pieces left: close the job, then wait for the workers that joined
     * (they finish within microseconds unless descheduled: then yield) */
    int joined = atomic_fetch_or(&p->joined, MG_POOL_CLOSED) & ~MG_POOL_CLOSED;
    for (unsigned spins = 0; atomic_load(&p->done) < joined; spins++) {
        CPU_RELAX();
        if (spins > 4096)
            sched_yield();
    }
}

void mg_cpu_pool_destroy(mg_cpu_pool *p)
{
    atomic_store(&p->stop, 1);
    publish(p);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    p->threads = NULL;
    p->n_workers = 0;
}

mg_code mg_cpu_pool_init(mg_cpu_pool *p, int n_threads, mg_error *err)
{
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->joined, MG_POOL_CLOSED);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->next, 0);
    p->n_workers = 0;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        mg_cpu_pool_destroy(p);
        return mg_fail(err, MG_ERR_NOMEM, "cpu: out of memory");
    }
    pthread_attr_t attr;
    int attr_ok = pthread_attr_init(&attr) == 0;
    int have_attr = attr_ok && pthread_attr_setstacksize(&attr, MG_KERNEL_THREAD_STACK) == 0;
    for (int i = 0; i < n_threads - 1; i++) {
        if (pthread_create(&p->threads[i], have_attr ? &attr : NULL, pool_worker, p) != 0) {
            if (attr_ok)
                pthread_attr_destroy(&attr);
            mg_cpu_pool_destroy(p);
            return mg_fail(err, MG_ERR_NOMEM, "cpu: cannot start worker thread %d", i);
        }
        p->n_workers++;
    }
    if (attr_ok)
        pthread_attr_destroy(&attr);
    return MG_OK;
}
