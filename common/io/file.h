/*
 * file.h - whole-file reads, atomic writes and paths.
 *
 * file_read_all(): reads a whole file into a malloc'd, NUL-terminated buffer (caller frees).
 * file_write_atomic(): writes `path.tmp`, fsyncs, renames over `path`; on failure removes the tmp
 * file and leaves any existing `path` untouched. Errors are PEFT_EIO naming the path.
 * file_join(): "dir/name" into a caller buffer; PEFT_EUSAGE if it does not fit.
 */
#ifndef PEFT_FILE_H
#define PEFT_FILE_H

#include <stdbool.h>
#include <stddef.h>

int file_read_all(const char *path, char **out, size_t *len);
int file_write_atomic(const char *path, const void *data, size_t len);
int file_join(char *buf, size_t cap, const char *dir, const char *name);
bool file_exists(const char *path);
bool file_is_dir(const char *path);
/* mkdir -p; PEFT_EIO naming the path on failure. */
int file_mkdirs(const char *path);

#endif
