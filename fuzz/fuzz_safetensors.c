/* libFuzzer target: the safetensors header parser over a whole file image;
 * every tensor it accepts must lie inside the buffer (converted to f32 when
 * small, so ASan sees any read past it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: the parser must not read past size */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    mg_safetensors st;
    mg_error err;
    memset(&st, 0, sizeof st);
    if (mg_st_parse(&st, buf, size, &err) == MG_OK) {
        for (size_t i = 0; i < st.n; i++) {
            const mg_st_tensor *t = &st.tensors[i];
            if (t->data < buf || t->nbytes > size || t->data + t->nbytes > buf + size)
                abort();
            if (mg_st_find(&st, t->name) == NULL)
                abort();
            int64_t n = mg_st_numel(t);
            if (n < 0)
                abort();
            if (n > 0 && n <= 4096 && mg_dtype_size(t->dtype)) {
                float *f = malloc((size_t)n * sizeof *f);
                if (f) {
                    mg_st_to_f32(t, f);
                    free(f);
                }
            }
        }
        mg_st_close(&st);
    }
    free(buf);
    return 0;
}
