/*
 * ps_client.h - the worker's side of the parameter server over MPI: a `ps` (common/train/ps.h)
 * whose servers are other ranks (server/server.h).
 *
 * ps_client_create() does the handshake: a Hello to every server (worker 0 adds the tensor table,
 * the run configuration and its initial parameters for each server's range), then each server's
 * Welcome (the step to start from and, on resume, this worker's saved state). ps_push() sends each
 * server its range of the gradient sum and receives the new parameters in reply (in synchronous
 * mode after every worker's push of the step is in); ps_pull() copies them out.
 *
 * Errors: a server's Error frame becomes that status with the server's message; transport errors
 * (transport.h). A silent server past --comm-timeout ends the job (transport_abort).
 */
#ifndef PEFT_PS_CLIENT_H
#define PEFT_PS_CLIENT_H

#include "train/ps.h"
#include "transport.h"

/* staleness 0: synchronous; K > 0: asynchronous, at most K pushes ahead of the slowest worker. */
int ps_client_create(transport *tr, const tensor_table *t, const float *init_params, const char *config_json,
                     long total_steps, int staleness, ps **out);

#endif
