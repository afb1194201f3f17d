/* A device lost in the middle of a generation (a CUDA context killed by a
 * kernel fault, simulated here by a CPU backend whose sync starts failing
 * and reports itself lost): the job fails with MG_ERR_DEVICE, the model
 * re-creates its backend and reloads its weights, and the next generation
 * gives the same codes as before the fault. The fault is placed in T5, in
 * the middle of the decode steps and in the last sync (EnCodec). */
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "runtime/recover_impl.h"
#include "runtime/musicgen.h"
#include "test_util.h"

/* Test-only state of the wrapped backend. */
static const mg_backend_ops *real_ops;
static mg_backend_ops faulty_ops;
static int syncs, fail_at, lost;

static mg_code faulty_sync(mg_backend *be, mg_error *err)
{
    if (++syncs == fail_at)
        lost = 1;
    if (lost)
        return mg_fail(err, MG_ERR_DEVICE, "test: the device is gone");
    return real_ops->sync(be, err);
}

static int faulty_lost(mg_backend *be) { return lost; }

static void wrap(mg_model *m, int at)
{
    real_ops = m->parts.be->ops;
    faulty_ops = *real_ops;
    faulty_ops.sync = faulty_sync;
    faulty_ops.lost = faulty_lost;
    m->parts.be->ops = &faulty_ops;
    syncs = 0;
    fail_at = at;
    lost = 0;
}

int main(void)
{
    char dir[4200], probe[4300];
    snprintf(dir, sizeof dir, "%s/tiny-proj", check_golden_dir());
    snprintf(probe, sizeof probe, "%s/model.safetensors", dir);
    if (access(probe, R_OK) != 0) {
        SKIP("golden tiny-proj model not found at %s", dir);
        return check_summary("test_recover");
    }
    static const char *const dtypes[] = {"f32", "q8"};
    for (int d = 0; d < 2; d++) {
        mg_model *m = NULL;
        mg_error err = {0};
        mg_model_options opt = {.device = "cpu", .dtype = dtypes[d], .n_threads = 2};
        if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
            CHECK(0, "load: %s", err.msg);
            continue;
        }
        int32_t *ref = NULL, *again = NULL;
        size_t n = 0, n2 = 0;
        CHECK(tu_greedy_codes(m, &ref, &n, &err) == MG_OK, "reference run: %s", err.msg);
        /* how many syncs one generation makes */
        wrap(m, -1);
        CHECK(tu_greedy_codes(m, &again, &n2, &err) == MG_OK, "counting run: %s", err.msg);
        free(again);
        int total = syncs;
        CHECK(total > 3, "%s: %d syncs per generation", dtypes[d], total);
        m->parts.be->ops = real_ops;
        int points[3] = {1, total / 2, total};
        for (int i = 0; i < 3 && ref; i++) {
            wrap(m, points[i]);
            mg_error e = {0};
            mg_code rc = tu_greedy_codes(m, &again, &n2, &e);
            free(again);
            CHECK(rc == MG_ERR_DEVICE, "%s, fault at sync %d/%d: %s (%s)", dtypes[d], points[i],
                  total, mg_code_name(rc), e.msg);
            again = NULL;
            rc = tu_greedy_codes(m, &again, &n2, &e);
            CHECK(rc == MG_OK && n2 == n && !memcmp(again, ref, n * sizeof *ref),
                  "%s, fault at sync %d: the next generation gives the same codes (%s)", dtypes[d],
                  points[i], e.msg);
            /* (the failed job is answered before the reload; the next one
             * waits for it in the scheduler) */
            CHECK(m->parts.be && m->parts.be->ops != &faulty_ops && !m->broken &&
                      !mg_runtime_device_lost(m),
                  "%s, fault at sync %d: it ran on a new backend", dtypes[d], points[i]);
            free(again);
        }
        free(ref);
        mg_model_free(m);
    }
    return check_summary("test_recover");
}
