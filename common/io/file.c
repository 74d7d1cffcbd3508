#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

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

int file_write_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return err_set(PEFT_EUSAGE, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return err_set(PEFT_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            goto out_unlink;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0) goto out_unlink;
    if (close(fd) != 0) {
        fd = -1;
        goto out_unlink;
    }
    if (rename(tmp, path) != 0) {
        fd = -1;
        goto out_unlink;
    }
    return PEFT_OK;
out_unlink: {
    int saved = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    return err_set(PEFT_EIO, "%s: cannot write: %s", path, strerror(saved));
}
}

int file_join(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return err_set(PEFT_EUSAGE, "%s/%s: path too long", dir, name);
    return PEFT_OK;
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
