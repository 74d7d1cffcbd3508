/*
 * safetensors.h - read and write the safetensors format (FORMATS.md §1).
 *
 * Reading: st_open() maps a file read-only, parses its JSON header (cJSON) and enforces every
 * rule of FORMATS.md §1.2 before returning: header size cap, UTF-8/JSON validity, a JSON object
 * starting with '{', known dtype strings, shapes whose byte size matches data_offsets, offsets that
 * tile the data buffer exactly (no gaps, no overlap, no trailing bytes), no duplicate names,
 * `__metadata__` a string->string map. Any violation returns PEFT_EFORMAT with a one-line message
 * that names the file and the tensor; PEFT_EIO if the file cannot be opened or mapped.
 *
 *     st_file *f;
 *     if (st_open("model.safetensors", &f)) { fprintf(stderr, "%s\n", err_msg()); ... }
 *     const st_tensor *t = st_find(f, "transformer.wte.weight");
 *     float *w = malloc(st_numel(t) * sizeof(float));
 *     st_read_f32(t, w, st_numel(t));   // converts F32, F16, BF16, F64
 *     st_close(f);
 *
 * A model directory (model.safetensors, or model.safetensors.index.json with its shards,
 * FORMATS.md §1.7) is opened as one st_model; lookups go through the index.
 *
 * Writing: st_writer collects (name, dtype, shape, data) entries without copying the data, then
 * st_writer_save() writes them as FORMATS.md §1.3 prescribes (sorted by descending dtype alignment
 * then name, compact header, `__metadata__` first, header padded with spaces to a multiple of 8) to
 * `path.tmp`, fsyncs and renames it over `path`: a failed write never destroys an existing file.
 *
 * Ownership: every st_tensor pointer, name and data pointer returned by a reader stays valid until
 * st_close()/st_model_close() of the file or model it came from. *_close(NULL) is a no-op.
 */
#ifndef PEFT_SAFETENSORS_H
#define PEFT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_HEADER_SIZE 100000000ull /* safetensors' MAX_HEADER_SIZE */
#define ST_MAX_DIMS 8

/* Listed in the format's increasing-alignment order (FORMATS.md §1.4): the writer relies on it. */
typedef enum {
    ST_BOOL, ST_F4, ST_F6_E2M3, ST_F6_E3M2, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_F8_E8M0,
    ST_F8_E4M3FNUZ, ST_F8_E5M2FNUZ, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32,
    ST_C64, ST_F64, ST_I64, ST_U64,
    ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    const char *name;            /* NUL-terminated tensor name */
    st_dtype dtype;
    int ndim;                    /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS];
    const void *data;            /* into the read-only mapping; little-endian, row-major */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;
typedef struct st_model st_model;

/* dtype <-> its exact string ("F32"); st_dtype_parse returns -1 for an unknown string (and sets
 * no message: the caller names the file and tensor). st_dtype_name returns "?" and st_dtype_bits 0
 * for a value outside the enum. */
const char *st_dtype_name(st_dtype dtype);
int st_dtype_parse(const char *s, st_dtype *out);
int st_dtype_bits(st_dtype dtype);

/* Number of elements (1 for a scalar). */
int64_t st_numel(const st_tensor *t);

/* Opens and validates one file. On error *out is NULL. */
int st_open(const char *path, st_file **out);
/* The same checks over a file's bytes already in memory (data[0, len), which must stay valid and
 * unchanged until st_close(); tensor data pointers point into it); `name` stands for the path. */
int st_open_memory(const char *name, const void *data, size_t len, st_file **out);
void st_close(st_file *f);
const char *st_path(const st_file *f);
size_t st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, size_t i);            /* in data-offset order */
const st_tensor *st_find(const st_file *f, const char *name);  /* NULL if absent */
const char *st_metadata(const st_file *f, const char *key);    /* NULL if absent */

/* Opens a model directory: model.safetensors.index.json (every shard it names, each validated;
 * every weight_map entry must exist in its shard) or else model.safetensors. */
int st_model_open(const char *dir, st_model **out);
void st_model_close(st_model *m);
const st_tensor *st_model_find(const st_model *m, const char *name);     /* NULL if absent */
const char *st_model_file_of(const st_model *m, const st_tensor *t);    /* the shard's path */
size_t st_model_count(const st_model *m);
const st_tensor *st_model_at(const st_model *m, size_t i);         /* in name order */

/* Converts t (F32, F16, BF16 or F64) to fp32 into dst, which holds n == st_numel(t) floats.
 * PEFT_EUNSUPPORTED for other dtypes, PEFT_EMISMATCH if n differs. */
int st_read_f32(const st_tensor *t, float *dst, size_t n);

/* Writer. */
typedef struct st_writer st_writer;
int st_writer_init(st_writer **out);
void st_writer_free(st_writer *w);
/* `name` is copied; `data` (nbytes = numel * bits / 8) is referenced and must stay valid until
 * st_writer_save() returns. PEFT_EUSAGE for a duplicate name. */
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data);
/* Setting a key again replaces its value. Keys are written in strcmp order. */
int st_writer_set_metadata(st_writer *w, const char *key, const char *value);
int st_writer_save(st_writer *w, const char *path);

/* Length of the longest valid UTF-8 prefix of s[0..n): n if all of it is valid. Overlong forms,
 * UTF-16 surrogates and code points past U+10FFFF are invalid. */
size_t st_utf8_valid_len(const char *s, size_t n);

#endif
