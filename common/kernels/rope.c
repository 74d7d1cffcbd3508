#include "kernels/rope.h"
#include "kernels/parallel.h"

#include <math.h>
#include <stddef.h>

static double scaled_inv_freq(double w, const model_config *c) {
    if (c->rope_scaling == ROPE_SCALING_LINEAR) return w / c->rope_factor;
    if (c->rope_scaling != ROPE_SCALING_LLAMA3) return w;
    /* Long wavelengths (low frequencies) are slowed down by `factor`, short ones kept, and the
     * band in between interpolated smoothly in 1/wavelength. */
    double old_ctx = c->rope_original_max_positions;
    double low_wavelen = old_ctx / c->rope_low_freq_factor;
    double high_wavelen = old_ctx / c->rope_high_freq_factor;
    double wavelen = 2.0 * M_PI / w;
    if (wavelen > low_wavelen) return w / c->rope_factor;
    if (wavelen < high_wavelen) return w;
    double smooth = (old_ctx / wavelen - c->rope_low_freq_factor) /
                    (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return (1.0 - smooth) * w / c->rope_factor + smooth * w;
}

void rope_table_init(float *cos_t, float *sin_t, int npos, const model_config *c) {
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double w = scaled_inv_freq(1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim), c);
        for (int p = 0; p < npos; p++) {
            cos_t[(size_t)p * half + i] = (float)cos(p * w);
            sin_t[(size_t)p * half + i] = (float)sin(p * w);
        }
    }
}

void rope_apply(float *x, int ld, int off, int nh, int hd, int B, int T, int pos0, const float *cos_t,
                const float *sin_t, int inverse) {
    const int half = hd / 2;
    const float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for collapse(2) if (PEFT_PAR((size_t)B * T * nh * hd))
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *cs = cos_t + (size_t)(pos0 + t) * half, *sn = sin_t + (size_t)(pos0 + t) * half;
            float *row = x + ((size_t)b * T + t) * ld + off;
            for (int h = 0; h < nh; h++) {
                float *v = row + (size_t)h * hd;
                for (int i = 0; i < half; i++) {
                    float x1 = v[i], x2 = v[i + half], c = cs[i], s = sign * sn[i];
                    v[i] = x1 * c - x2 * s;
                    v[i + half] = x2 * c + x1 * s;
                }
            }
        }
}
