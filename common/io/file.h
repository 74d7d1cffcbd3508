/*
 * file.h - whole-file reads, atomic writes and paths.
 *
 * file_read_all(): reads a whole file into a malloc'd, NUL-terminated buffer (caller frees).
 * file_write_atomic(): writes `path.tmp`, fsyncs, renames over `path`; on failure removes the tmp
 * file and leaves any existing `path` untouched. Errors are PEFT_EIO naming the path.
 * file_atomic_*: the same for a file written piece by piece:
 *     file_atomic w;
 *     PEFT_TRY(file_atomic_begin(&w, path));
 *     file_atomic_write(&w, a, na); file_atomic_write(&w, b, nb);   // a failure is remembered
 *     return file_atomic_commit(&w);  // fsync + rename, or unlink the tmp file and report
 * file_join(): "dir/name" into a caller buffer; PEFT_EUSAGE if it does not fit.
 */
#ifndef PEFT_FILE_H
#define PEFT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

int file_read_all(const char *path, char **out, size_t *len);
/* Opens a file to read line by line (caller fcloses *out); PEFT_EIO "PATH: cannot open: why", or
 * "PATH: is a directory, not a file" (fopen accepts a directory and every read then fails). */
int file_open_read(const char *path, FILE **out);
int file_write_atomic(const char *path, const void *data, size_t len);

typedef struct file_atomic {
    char path[4096], tmp[4100];
    int fd;
    int err; /* first errno seen, 0 while all is well */
} file_atomic;
int file_atomic_begin(file_atomic *w, const char *path);
void file_atomic_write(file_atomic *w, const void *data, size_t len);
int file_atomic_commit(file_atomic *w);
/* Gives up: removes the tmp file. */
void file_atomic_abort(file_atomic *w);
int file_join(char *buf, size_t cap, const char *dir, const char *name);
bool file_exists(const char *path);
/* Copies a file (atomically at the destination); PEFT_EIO naming the path that failed. */
int file_copy(const char *from, const char *to);
bool file_is_dir(const char *path);
/* mkdir -p; PEFT_EIO naming the path on failure. */
int file_mkdirs(const char *path);

#endif
