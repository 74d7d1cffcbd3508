/* ps.c - the parameter-server interface: dispatch to the implementation and shared helpers (see ps.h). */
#include "train/ps.h"

void ps_free(ps *s) {
    if (s) s->ops->free(s);
}
int ps_pull(ps *s, float *params, long *version) { return s->ops->pull(s, params, version); }
int ps_push(ps *s, const ps_push_msg *msg, ps_step_info *info) { return s->ops->push(s, msg, info); }
long ps_start_step(const ps *s) { return s->start_step; }

void ps_resume_state(const ps *s, const void **state, size_t *len) {
    *state = s->resume_state;
    *len = s->resume_state_len;
}

void ps_topology(const ps *s, int *worker, int *workers, bool *async) {
    *worker = s->worker;
    *workers = s->workers;
    *async = s->async;
}

void ps_shard_range(size_t total, int S, int k, size_t *offset, size_t *count) {
    size_t chunks = (total + PS_NORM_CHUNK - 1) / PS_NORM_CHUNK;
    size_t c0 = chunks * (size_t)k / (size_t)S, c1 = chunks * (size_t)(k + 1) / (size_t)S;
    size_t a = c0 * PS_NORM_CHUNK, b = c1 * PS_NORM_CHUNK;
    if (a > total) a = total;
    if (b > total) b = total;
    *offset = a;
    *count = b - a;
}
