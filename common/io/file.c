#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

int file_open_read(const char *path, FILE **out) {
    *out = NULL;
    if (file_is_dir(path)) return err_set(PEFT_EIO, "%s: is a directory, not a file", path);
    FILE *f = fopen(path, "r");
    if (!f) return err_set(PEFT_EIO, "%s: cannot open: %s", path, strerror(errno));
    *out = f;
    return PEFT_OK;
}

int file_read_all(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(PEFT_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) goto out_read_error;
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) goto out_read_error;
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return err_set(PEFT_ENOMEM, "%s: cannot allocate %ld bytes", path, size);
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        goto out_read_error;
    }
    fclose(f);
    buf[size] = '\0';
    *out = buf;
    if (len) *len = (size_t)size;
    return PEFT_OK;
out_read_error:
    fclose(f);
    return err_set(PEFT_EIO, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
}

int file_atomic_begin(file_atomic *w, const char *path) {
    w->err = 0;
    if (snprintf(w->path, sizeof w->path, "%s", path) >= (int)sizeof w->path)
        return err_set(PEFT_EUSAGE, "%s: path too long", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) return err_set(PEFT_EIO, "%s: cannot create %s: %s", path, w->tmp, strerror(errno));
    return PEFT_OK;
}

void file_atomic_write(file_atomic *w, const void *data, size_t len) {
    const char *p = data;
    while (len > 0 && !w->err) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0) {
            if (errno != EINTR) w->err = errno;
            continue;
        }
        p += n;
        len -= (size_t)n;
    }
}

void file_atomic_abort(file_atomic *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    unlink(w->tmp);
}

int file_atomic_commit(file_atomic *w) {
    if (!w->err && fsync(w->fd) != 0) w->err = errno;
    if (close(w->fd) != 0 && !w->err) w->err = errno;
    w->fd = -1;
    if (!w->err && rename(w->tmp, w->path) != 0) w->err = errno;
    if (!w->err) return PEFT_OK;
    unlink(w->tmp);
    return err_set(PEFT_EIO, "%s: cannot write: %s", w->path, strerror(w->err));
}

int file_write_atomic(const char *path, const void *data, size_t len) {
    file_atomic w;
    PEFT_TRY(file_atomic_begin(&w, path));
    file_atomic_write(&w, data, len);
    return file_atomic_commit(&w);
}

int file_join(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return err_set(PEFT_EUSAGE, "%s/%s: path too long", dir, name);
    return PEFT_OK;
}

int file_copy(const char *from, const char *to) {
    char *data;
    size_t len;
    PEFT_TRY(file_read_all(from, &data, &len));
    int rc = file_write_atomic(to, data, len);
    free(data);
    return rc;
}

bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool file_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int file_mkdirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return err_set(PEFT_EUSAGE, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return err_set(PEFT_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return err_set(PEFT_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
    if (!file_is_dir(buf)) return err_set(PEFT_EIO, "%s: exists and is not a directory", buf);
    return PEFT_OK;
}
