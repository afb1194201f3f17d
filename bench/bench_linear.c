/* bench_linear [M] [N] [K]: linear() throughput of every weight format and
 * every kernel level this CPU has, on a matrix far larger than the caches
 * (several copies are cycled so each call streams its weights from memory),
 * as ms per call and GB/s of weight bytes read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu_backend.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#define DIE(...) do { fprintf(stderr, "bench_linear: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

enum { COPIES = 24, REPS = 5 };

int main(int argc, char **argv)
{
    int64_t M = argc > 1 ? atoll(argv[1]) : 2, N = argc > 2 ? atoll(argv[2]) : 4096,
            K = argc > 3 ? atoll(argv[3]) : 1024;
    mg_error err = {0};
    float *host = malloc((size_t)(N * K) * sizeof *host);
    if (!host)
        DIE("out of memory");
    for (int64_t i = 0; i < N * K; i++)
        host[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    static const mg_dtype dts[] = {MG_DT_F32, MG_DT_BF16, MG_DT_Q8};
    mg_cpu_isa top = mg_cpu_isa_detect();
    printf("linear M=%lld N=%lld K=%lld, %d weight copies cycled\n", (long long)M, (long long)N,
           (long long)K, COPIES);
    for (size_t d = 0; d < 3; d++) {
        mg_backend *be;
        if (mg_backend_cpu_create(&be, argc > 4 ? atoi(argv[4]) : 0, dts[d], NULL, &err))
            DIE("%s", err.msg);
        mg_tensor *w[COPIES], *x, *y;
        for (int c = 0; c < COPIES; c++) {
            w[c] = calloc(1, sizeof *w[c]);
            if (!w[c])
                DIE("out of memory");
            *w[c] = (mg_tensor){.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {N, K},
                                .nbytes = (size_t)(N * K) * sizeof(float)};
            /* F32 is used in place: give each copy its own memory */
            float *own = dts[d] == MG_DT_F32 ? malloc(w[c]->nbytes) : host;
            if (!own)
                DIE("out of memory");
            if (own != host)
                memcpy(own, host, w[c]->nbytes);
            if (be->ops->weight(be, w[c], own, MG_WEIGHT_MATRIX, &err))
                DIE("%s", err.msg);
            if (own != host)
                w[c]->owns = 0;
        }
        if (mg_tensor_new2(&x, be, M, K, &err) || mg_tensor_new2(&y, be, M, N, &err))
            DIE("%s", err.msg);
        float *xh = malloc((size_t)(M * K) * sizeof *xh);
        if (!xh)
            DIE("out of memory");
        for (int64_t i = 0; i < M * K; i++)
            xh[i] = (float)(i % 17) / 17.0f - 0.5f;
        if (mg_tensor_upload_f32(x, xh, &err))
            DIE("%s", err.msg);
        free(xh);
        size_t bytes = mg_cpu_matrix_nbytes(dts[d], N, K);
        for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)top; isa++) {
            mg_cpu_backend_set_isa(be, (mg_cpu_isa)isa);
            double best = 1e30;
            for (int r = 0; r < REPS; r++) {
                double t0 = now_ms();
                for (int c = 0; c < COPIES; c++)
                    be->ops->linear(be, y, x, w[c], NULL);
                double ms = (now_ms() - t0) / COPIES;
                best = ms < best ? ms : best;
            }
            printf("%-5s %-11s %8.3f ms  %6.1f GB/s\n", mg_dtype_name(dts[d]),
                   mg_cpu_isa_name((mg_cpu_isa)isa), best, bytes / best / 1e6);
        }
        for (int c = 0; c < COPIES; c++) {
            if (dts[d] == MG_DT_F32)
                free(w[c]->data);
            mg_tensor_free(w[c]);
        }
        mg_tensor_free(x);
        mg_tensor_free(y);
        be->ops->destroy(be);
    }
    free(host);
    return 0;
}
