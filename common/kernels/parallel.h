/*
 * parallel.h - when a kernel is worth an OpenMP parallel region. Below PEFT_PAR_MIN elements of
 * work a region's fork/join (and, on shared cores, its spin-waiting) costs more than it saves.
 */
#ifndef PEFT_PARALLEL_H
#define PEFT_PARALLEL_H

#define PEFT_PAR_MIN 32768
#define PEFT_PAR(work) ((size_t)(work) >= (size_t)PEFT_PAR_MIN)

#endif
