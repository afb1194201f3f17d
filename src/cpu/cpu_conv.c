/* CPU convolutions, padding and LSTM for the EnCodec decoder. */
#include "cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>

/* Placeholder bodies until the EnCodec ops land: they abort loudly rather
 * than return wrong numbers. */
#define NOT_YET(name) do { fprintf(stderr, "cpu: %s is not implemented yet\n", name); abort(); } while (0)

void mg_cpu_conv1d(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                   const mg_tensor *bias, int batch, int stride, int dilation) { NOT_YET("conv1d"); }
void mg_cpu_conv_transpose1d(mg_backend *be, mg_tensor *y, const mg_tensor *x,
                             const mg_tensor *w, const mg_tensor *bias, int batch, int stride,
                             int trim_left) { NOT_YET("conv_transpose1d"); }
void mg_cpu_pad_reflect(mg_backend *be, mg_tensor *y, const mg_tensor *x, int left, int right) { NOT_YET("pad_reflect"); }
void mg_cpu_transpose(mg_backend *be, mg_tensor *y, const mg_tensor *x, int batch) { NOT_YET("transpose"); }
void mg_cpu_lstm(mg_backend *be, mg_tensor *h_out, const mg_tensor *x, const mg_tensor *w_ih,
                 const mg_tensor *w_hh, const mg_tensor *b_ih, const mg_tensor *b_hh, int batch) { NOT_YET("lstm"); }
