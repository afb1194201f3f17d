/* Continuous batching on the CPU: one 10 s request alone, then N of them
 * submitted at once to the same model (the scheduler decodes them in one
 * batched step), timed until all finish, after one untimed warm-up request.
 * A round times the two back to back; the ratio reported is the median of
 * the rounds' ratios (on a shared host one slow phase moved a single round's
 * ratio by +-0.1; with 3 rounds the median still moved by +-0.08 between
 * runs, hence 5). Writes batch<N>_ratio_<dtype> (and the median times) as
 * JSON for bench_engine --table.
 *   bench_batch MODEL_DIR [--dtype q8] [--requests 4] [--seconds 10] [--rounds 5]
 *               [--threads N] [--json F] */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tools/backend_env.h"
#include "runtime/musicgen.h"

#define DIE(...) (fprintf(stderr, "bench_batch: " __VA_ARGS__), fprintf(stderr, "\n"), exit(1))

typedef struct {
    mg_model     *m;
    mg_gen_params p;
    int           index;
    mg_code       rc;
    mg_error      err;
    double        steps_ms;
} request;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run_request(void *arg)
{
    request *r = arg;
    static const char *const prompts[] = {"calm piano with soft drums", "upbeat electronic dance",
                                          "slow jazz with saxophone", "epic orchestral theme"};
    const char *prompt = prompts[r->index % 4];
    mg_gen_result res;
    r->p.seed = 100 + (uint64_t)r->index;
    r->rc = mg_generate(r->m, &prompt, 1, &r->p, NULL, &res, &r->err);
    if (r->rc == MG_OK) {
        r->steps_ms = res.decode_ms / res.steps;
        mg_gen_result_free(&res);
    }
    return NULL;
}

/* n requests at once; returns the seconds until the last one finished */
static double run_together(mg_model *m, const mg_gen_params *p, int n)
{
    request *r = calloc((size_t)n, sizeof *r);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    if (!r || !th)
        DIE("out of memory");
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        r[i] = (request){.m = m, .p = *p, .index = i};
        if (pthread_create(&th[i], NULL, run_request, &r[i]) != 0)
            DIE("cannot start a thread");
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    for (int i = 0; i < n; i++)
        if (r[i].rc != MG_OK)
            DIE("request %d: %s", i, r[i].err.msg);
    printf("%d request%s: %.2f s until all finished, %.1f ms per decode step", n,
           n > 1 ? "s" : "", dt, r[0].steps_ms);
    free(r);
    free(th);
    return dt;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        DIE("usage: bench_batch MODEL_DIR [--dtype D] [--device D] [--requests N] [--seconds S] "
            "[--rounds R] [--threads N] [--json FILE]");
    const char *dtype = "q8", *json_path = NULL, *device = NULL;
    int n = 4, threads = 0, rounds = 5;
    double seconds = 10;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dtype"))
            dtype = argv[i + 1];
        else if (!strcmp(argv[i], "--device"))
            device = argv[i + 1];
        else if (!strcmp(argv[i], "--requests"))
            n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--json"))
            json_path = argv[i + 1];
        else
            DIE("unknown option %s", argv[i]);
    }
    if (n < 1 || n > MG_MAX_BATCH)
        DIE("--requests must be in [1, %d]", MG_MAX_BATCH);
    if (rounds < 1 || rounds > 100)
        DIE("--rounds must be in [1, 100]");
    mg_model *m = NULL;
    mg_error err = {0};
    mg_backend_options backend;
    mg_backend_options_from_env(&backend);
    mg_model_options opt = {.n_threads = threads, .dtype = dtype, .max_batch = n, .device = device,
                            .backend = &backend};
    if (mg_model_load(&m, argv[1], &opt, &err) != MG_OK)
        DIE("%s", err.msg);
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.duration = (float)seconds;
    printf("continuous batching, %s weights on %s, %.0f s of audio per request:\n", dtype,
           mg_model_device(m), seconds);
    /* a first generation pays for fresh pages (attention caches, EnCodec
     * scratch): warm up with one, so both timed runs find a served model */
    printf("  warm-up:  ");
    run_together(m, &p, 1);
    printf("\n");
    double ones[100], alls[100], ratios[100];
    for (int r = 0; r < rounds; r++) {
        printf("  round %d:  ", r + 1);
        ones[r] = run_together(m, &p, 1);
        printf("\n            ");
        alls[r] = run_together(m, &p, n);
        ratios[r] = alls[r] / ones[r];
        printf("\n            ratio %.2f\n", ratios[r]);
    }
    double one = median(ones, rounds), all = median(alls, rounds);
    double ratio = median(ratios, rounds); /* (sorts them: the range is the ends) */
    printf("  %d concurrent requests took %.2fx the time of one (median of %d rounds, %.2f-%.2f)\n",
           n, ratio, rounds, ratios[0], ratios[rounds - 1]);
    if (json_path) {
        char key[64];
        json_t *o = json_object();
        snprintf(key, sizeof key, "batch%d_ratio_%s", n, dtype);
        json_object_set_new(o, key, json_real(ratio));
        snprintf(key, sizeof key, "batch1_s_%s", dtype);
        json_object_set_new(o, key, json_real(one));
        snprintf(key, sizeof key, "batch%d_s_%s", n, dtype);
        json_object_set_new(o, key, json_real(all));
        if (!o || json_dump_file(o, json_path, JSON_INDENT(2)) != 0)
            DIE("cannot write %s", json_path);
        json_decref(o);
    }
    mg_model_free(m);
    return 0;
}
