/* The CPU backend's persistent worker pool. A decode step runs a few hundred
 * parallel ops of tens of microseconds each, so waking sleeping threads
 * through a condition variable (tens of microseconds in a VM) would cost as
 * much as the work: workers spin on an atomic generation counter for a short
 * while after each op, and only then sleep. */
#ifndef MG_CPU_POOL_H
#define MG_CPU_POOL_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/error.h"

/* fn runs over [i0, i1) of a range split across the workers. */
#define MG_POOL_CLOSED (1 << 30)
typedef void (*mg_cpu_task_fn)(void *ctx, int64_t i0, int64_t i1);

typedef struct mg_cpu_pool {
    pthread_t      *threads;
    int             n_workers;  /* threads besides the caller */
    pthread_mutex_t mu;
    pthread_cond_t  wake;
    _Atomic uint64_t generation; /* bumped to publish a job (or stop) */
    /* Workers that joined the current job (MG_POOL_CLOSED set once the
     * caller has run out of pieces: later arrivals stay out), and those of
     * them that are done. The caller waits only for workers that joined, so
     * one descheduled by another process costs its piece, not the op. */
    _Atomic int     joined;
    _Atomic int     done;
    _Atomic int     sleepers;    /* workers blocked on wake */
    _Atomic int     stop;
    /* the current job, written before generation is bumped */
    mg_cpu_task_fn  fn;
    void           *ctx;
    int64_t         n, grain;
    _Atomic int64_t next;        /* first item not yet handed out */
} mg_cpu_pool;

/* Stack of the threads that run kernels (pool workers, the scheduler): the
 * kernels keep per-call scratch of up to a few hundred KB on the stack
 * (attention scores), which some libcs' default thread stack cannot hold. */
enum { MG_KERNEL_THREAD_STACK = 8 << 20 };

/* Starts n_threads - 1 workers (the caller is the last thread). */
mg_code mg_cpu_pool_init(mg_cpu_pool *p, int n_threads, mg_error *err);
void    mg_cpu_pool_destroy(mg_cpu_pool *p);
/* Runs fn over [0, n) in contiguous pieces that the threads take in turn
 * (so a thread slowed by anything else just takes fewer); on one thread when
 * n < 2·min_per_thread. Every item is computed by exactly one call, so ops
 * whose items are independent give the same result on any thread count.
 * Returns when all are done. */
void    mg_cpu_pool_run(mg_cpu_pool *p, int64_t n, int64_t min_per_thread, mg_cpu_task_fn fn,
                        void *ctx);
#endif
