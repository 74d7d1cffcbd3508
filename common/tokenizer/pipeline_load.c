/*
 * pipeline_load.c - tokenizer.json's normalizer, pre_tokenizer, post_processor and decoder objects.
 *
 * Sequences are flattened into one array per stage (running a Sequence is running its members in
 * order, for all four). Every unsupported "type" is PEFT_EUNSUPPORTED naming the file and the JSON
 * path of the object, e.g. "tokenizer.json: pre_tokenizer.pretokenizers[1].type 'Whitespace' is not
 * supported".
 */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"

#define PATH_MAX_LEN 256

static const cJSON *get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_bool(const cJSON *obj, const char *key, bool dflt, const char *file, const char *path, bool *out) {
    const cJSON *v = get(obj, key);
    if (!v) {
        *out = dflt;
        return PEFT_OK;
    }
    if (!cJSON_IsBool(v)) return err_set(PEFT_EFORMAT, "%s: %s.%s must be true or false", file, path, key);
    *out = cJSON_IsTrue(v);
    return PEFT_OK;
}

static int get_str(const cJSON *obj, const char *key, const char *file, const char *path, const char **out) {
    const cJSON *v = get(obj, key);
    if (!v || !cJSON_IsString(v)) return err_set(PEFT_EFORMAT, "%s: %s.%s must be a string", file, path, key);
    size_t n = strlen(v->valuestring);
    if (utf8_check(v->valuestring, n) != n)
        return err_set(PEFT_EFORMAT, "%s: %s.%s is not valid UTF-8", file, path, key);
    *out = v->valuestring;
    return PEFT_OK;
}

/* A string of exactly one character (Metaspace's replacement, Strip's content). */
static int get_char(const cJSON *obj, const char *key, const char *file, const char *path, uint32_t *cp) {
    const char *s = NULL;
    PEFT_TRY(get_str(obj, key, file, path, &s));
    size_t n = strlen(s);
    int len = n ? utf8_len((unsigned char)s[0]) : 0;
    if (n == 0 || utf8_check(s, n) != n || (size_t)len != n)
        return err_set(PEFT_EFORMAT, "%s: %s.%s must be a single character, got '%s'", file, path, key, s);
    *cp = utf8_next(s, &len);
    return PEFT_OK;
}

static int get_type(const cJSON *obj, const char *file, const char *path, const char **type) {
    if (!cJSON_IsObject(obj)) return err_set(PEFT_EFORMAT, "%s: %s must be an object or null", file, path);
    return get_str(obj, "type", file, path, type);
}

/* {"String": "..."} or {"Regex": "..."} */
static int get_pattern(const cJSON *obj, const char *file, const char *path, tok_pattern *p) {
    const cJSON *pat = get(obj, "pattern");
    char where[PATH_MAX_LEN + 64];
    snprintf(where, sizeof where, "%s: %s.pattern", file, path);
    const cJSON *s = pat ? get(pat, "String") : NULL, *r = pat ? get(pat, "Regex") : NULL;
    if (s && cJSON_IsString(s)) return tok_pattern_literal(p, s->valuestring, strlen(s->valuestring));
    if (r && cJSON_IsString(r)) return tok_pattern_regex(p, r->valuestring, where);
    return err_set(PEFT_EFORMAT, "%s must be {\"String\": ...} or {\"Regex\": ...}", where);
}

/* Appends one zeroed element to a growing array; *slot receives it. */
static int push_elem(void **arr, size_t *n, size_t elem, void **slot) {
    void *p = realloc(*arr, (*n + 1) * elem);
    if (!p) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate the pipeline");
    *arr = p;
    *slot = (char *)p + *n * elem;
    memset(*slot, 0, elem);
    (*n)++;
    return PEFT_OK;
}

static int dup_str(const char *s, char **out, size_t *len) {
    *len = strlen(s);
    *out = strdup(s);
    return *out ? PEFT_OK : err_set(PEFT_ENOMEM, "tokenizer: cannot allocate the pipeline");
}

/* Runs fn over each member of the array obj[key], with the path "path.key[i]". */
typedef int (*member_fn)(tokenizer *tk, const cJSON *j, const char *file, const char *path);
static int each_member(tokenizer *tk, const cJSON *obj, const char *key, const char *file, const char *path,
                       member_fn fn) {
    const cJSON *arr = get(obj, key);
    if (!cJSON_IsArray(arr)) return err_set(PEFT_EFORMAT, "%s: %s.%s must be an array", file, path, key);
    int i = 0;
    for (const cJSON *m = arr->child; m; m = m->next, i++) {
        char sub[PATH_MAX_LEN];
        snprintf(sub, sizeof sub, "%s.%s[%d]", path, key, i);
        PEFT_TRY(fn(tk, m, file, sub));
    }
    return PEFT_OK;
}

static int unsupported(const char *file, const char *path, const char *type, const char *supported) {
    return err_set(PEFT_EUNSUPPORTED, "%s: %s.type '%s' is not supported (supported: %s)", file, path, type,
                   supported);
}

/* ---- normalizer ------------------------------------------------------------------------------ */

static int parse_normalizer(tokenizer *tk, const cJSON *j, const char *file, const char *path) {
    if (cJSON_IsNull(j)) return PEFT_OK;
    const char *type = NULL;
    PEFT_TRY(get_type(j, file, path, &type));
    if (!strcmp(type, "Sequence")) return each_member(tk, j, "normalizers", file, path, parse_normalizer);
    tok_normalizer *nm = NULL;
    if (!strcmp(type, "NFC")) {
        PEFT_TRY(push_elem((void **)&tk->norm, &tk->n_norm, sizeof *nm, (void **)&nm));
        nm->type = TOK_NORM_NFC;
    } else if (!strcmp(type, "Prepend")) {
        const char *s = NULL;
        PEFT_TRY(get_str(j, "prepend", file, path, &s));
        PEFT_TRY(push_elem((void **)&tk->norm, &tk->n_norm, sizeof *nm, (void **)&nm));
        nm->type = TOK_NORM_PREPEND;
        PEFT_TRY(dup_str(s, &nm->str, &nm->str_len));
    } else if (!strcmp(type, "Replace")) {
        const char *s = NULL;
        PEFT_TRY(get_str(j, "content", file, path, &s));
        PEFT_TRY(push_elem((void **)&tk->norm, &tk->n_norm, sizeof *nm, (void **)&nm));
        nm->type = TOK_NORM_REPLACE;
        PEFT_TRY(dup_str(s, &nm->str, &nm->str_len));
        PEFT_TRY(get_pattern(j, file, path, &nm->pat));
    } else {
        return unsupported(file, path, type, "NFC, Prepend, Replace, Sequence");
    }
    return PEFT_OK;
}

/* ---- pre-tokenizer --------------------------------------------------------------------------- */

static int get_prepend_scheme(const cJSON *j, const char *file, const char *path, enum tok_prepend *out) {
    bool add_prefix_space = true;
    PEFT_TRY(get_bool(j, "add_prefix_space", true, file, path, &add_prefix_space));
    *out = TOK_PREPEND_ALWAYS;
    const cJSON *v = get(j, "prepend_scheme");
    if (v) {
        const char *s = cJSON_IsString(v) ? v->valuestring : "";
        if (!strcmp(s, "always")) *out = TOK_PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *out = TOK_PREPEND_FIRST;
        else if (!strcmp(s, "never")) *out = TOK_PREPEND_NEVER;
        else
            return err_set(PEFT_EFORMAT, "%s: %s.prepend_scheme must be \"always\", \"first\" or \"never\"", file,
                           path);
    }
    if (!add_prefix_space) { /* the key of tokenizers < 0.19: false means never */
        if (v && *out != TOK_PREPEND_NEVER)
            return err_set(PEFT_EFORMAT, "%s: %s.add_prefix_space false contradicts prepend_scheme", file, path);
        *out = TOK_PREPEND_NEVER;
    }
    return PEFT_OK;
}

const char tok_gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int parse_behavior(const cJSON *j, const char *file, const char *path, enum tok_split_behavior *b) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *s = NULL;
    PEFT_TRY(get_str(j, "behavior", file, path, &s));
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *b = (enum tok_split_behavior)i;
            return PEFT_OK;
        }
    return err_set(PEFT_EFORMAT,
                   "%s: %s.behavior '%s' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                   "Contiguous",
                   file, path, s);
}

static int parse_pretok(tokenizer *tk, const cJSON *j, const char *file, const char *path) {
    if (cJSON_IsNull(j)) return PEFT_OK;
    const char *type = NULL;
    PEFT_TRY(get_type(j, file, path, &type));
    if (!strcmp(type, "Sequence")) return each_member(tk, j, "pretokenizers", file, path, parse_pretok);
    char where[PATH_MAX_LEN + 64];
    snprintf(where, sizeof where, "%s: %s", file, path);
    tok_pretok *pt = NULL;
    if (!strcmp(type, "ByteLevel")) {
        PEFT_TRY(push_elem((void **)&tk->pre, &tk->n_pre, sizeof *pt, (void **)&pt));
        pt->type = TOK_PRE_BYTELEVEL;
        PEFT_TRY(get_bool(j, "add_prefix_space", true, file, path, &pt->add_prefix_space));
        PEFT_TRY(get_bool(j, "use_regex", true, file, path, &pt->use_regex));
        if (pt->use_regex) PEFT_TRY(tok_pattern_regex(&pt->pat, tok_gpt2_regex, where));
    } else if (!strcmp(type, "Split")) {
        PEFT_TRY(push_elem((void **)&tk->pre, &tk->n_pre, sizeof *pt, (void **)&pt));
        pt->type = TOK_PRE_SPLIT;
        PEFT_TRY(parse_behavior(j, file, path, &pt->behavior));
        PEFT_TRY(get_bool(j, "invert", false, file, path, &pt->invert));
        PEFT_TRY(get_pattern(j, file, path, &pt->pat));
    } else if (!strcmp(type, "Metaspace")) {
        uint32_t rep;
        PEFT_TRY(get_char(j, "replacement", file, path, &rep));
        PEFT_TRY(push_elem((void **)&tk->pre, &tk->n_pre, sizeof *pt, (void **)&pt));
        pt->type = TOK_PRE_METASPACE;
        pt->rep_len = utf8_put(rep, pt->rep);
        PEFT_TRY(get_prepend_scheme(j, file, path, &pt->prepend));
        PEFT_TRY(get_bool(j, "split", true, file, path, &pt->split));
        PEFT_TRY(tok_pattern_literal(&pt->pat, pt->rep, (size_t)pt->rep_len));
    } else if (!strcmp(type, "Digits")) {
        bool individual = false;
        PEFT_TRY(get_bool(j, "individual_digits", false, file, path, &individual));
        PEFT_TRY(push_elem((void **)&tk->pre, &tk->n_pre, sizeof *pt, (void **)&pt));
        pt->type = TOK_PRE_DIGITS;
        pt->behavior = individual ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS;
        PEFT_TRY(tok_pattern_regex(&pt->pat, "\\p{N}", where));
    } else {
        return unsupported(file, path, type, "ByteLevel, Split, Metaspace, Digits, Sequence");
    }
    return PEFT_OK;
}

/* ---- post-processor -------------------------------------------------------------------------- */

static int copy_ids(int32_t **v, size_t *n, const int32_t *src, size_t k) {
    *v = malloc((k + 1) * sizeof **v);
    if (!*v) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate the post-processor");
    memcpy(*v, src, k * sizeof *src);
    *n = k;
    return PEFT_OK;
}

/* The ids of special_tokens[name].ids. */
static int template_ids(const cJSON *j, const char *name, const char *file, const char *path, int32_t *ids,
                        size_t cap, size_t *n) {
    const cJSON *sp = get(get(j, "special_tokens"), name), *arr = sp ? get(sp, "ids") : NULL;
    if (!cJSON_IsArray(arr))
        return err_set(PEFT_EFORMAT, "%s: %s.special_tokens has no ids for '%s'", file, path, name);
    *n = 0;
    for (const cJSON *v = arr->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT32_MAX || *n == cap)
            return err_set(PEFT_EFORMAT, "%s: %s.special_tokens['%s'].ids must be up to %zu token ids", file,
                           path, name, cap);
        ids[(*n)++] = (int32_t)v->valuedouble;
    }
    return PEFT_OK;
}

static int parse_template(tokenizer *tk, const cJSON *j, const char *file, const char *path) {
    /* HF hands a second template the two encodings the first one made, as a pair */
    if (tk->post_prefix)
        return err_set(PEFT_EUNSUPPORTED, "%s: %s: a second TemplateProcessing is not supported", file, path);
    const cJSON *single = get(j, "single");
    if (!cJSON_IsArray(single)) return err_set(PEFT_EFORMAT, "%s: %s.single must be an array", file, path);
    int32_t pre[64], suf[64], ids[64];
    size_t npre = 0, nsuf = 0, nseq = 0;
    int i = 0;
    for (const cJSON *it = single->child; it; it = it->next, i++) {
        const cJSON *sp = get(it, "SpecialToken"), *seq = get(it, "Sequence");
        const cJSON *id = get(sp ? sp : seq, "id");
        if (!cJSON_IsString(id))
            return err_set(PEFT_EFORMAT, "%s: %s.single[%d] must be a SpecialToken or a Sequence with an id", file,
                           path, i);
        if (seq) {
            if (strcmp(id->valuestring, "A") != 0 || nseq++)
                return err_set(PEFT_EUNSUPPORTED, "%s: %s.single must hold sequence A exactly once", file, path);
            continue;
        }
        size_t k = 0, *cnt = nseq ? &nsuf : &npre;
        int32_t *dst = nseq ? suf : pre;
        PEFT_TRY(template_ids(j, id->valuestring, file, path, ids, 64, &k));
        if (*cnt + k > 64) return err_set(PEFT_EUNSUPPORTED, "%s: %s.single adds over 64 tokens", file, path);
        memcpy(dst + *cnt, ids, k * sizeof *ids);
        *cnt += k;
    }
    if (!nseq) return err_set(PEFT_EUNSUPPORTED, "%s: %s.single must hold sequence A exactly once", file, path);
    PEFT_TRY(copy_ids(&tk->post_prefix, &tk->n_prefix, pre, npre));
    return copy_ids(&tk->post_suffix, &tk->n_suffix, suf, nsuf);
}

static int parse_post(tokenizer *tk, const cJSON *j, const char *file, const char *path) {
    if (cJSON_IsNull(j)) return PEFT_OK;
    const char *type = NULL;
    PEFT_TRY(get_type(j, file, path, &type));
    if (!strcmp(type, "Sequence")) return each_member(tk, j, "processors", file, path, parse_post);
    if (!strcmp(type, "ByteLevel")) return PEFT_OK; /* only trims offsets */
    if (!strcmp(type, "TemplateProcessing")) return parse_template(tk, j, file, path);
    return unsupported(file, path, type, "ByteLevel, TemplateProcessing, Sequence");
}

/* ---- decoder --------------------------------------------------------------------------------- */

static int parse_decoder(tokenizer *tk, const cJSON *j, const char *file, const char *path) {
    if (cJSON_IsNull(j)) return PEFT_OK;
    const char *type = NULL;
    PEFT_TRY(get_type(j, file, path, &type));
    if (!strcmp(type, "Sequence")) return each_member(tk, j, "decoders", file, path, parse_decoder);
    static const char *const names[] = {"ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip"};
    int t = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(type, names[i])) t = i;
    if (t < 0)
        return unsupported(file, path, type, "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence");
    tok_decoder *d = NULL;
    PEFT_TRY(push_elem((void **)&tk->dec, &tk->n_dec, sizeof *d, (void **)&d));
    d->type = (enum tok_dec_type)t;
    if (d->type == TOK_DEC_METASPACE) {
        PEFT_TRY(get_char(j, "replacement", file, path, &d->ch));
        PEFT_TRY(get_prepend_scheme(j, file, path, &d->prepend));
    } else if (d->type == TOK_DEC_REPLACE) {
        const char *s = NULL;
        PEFT_TRY(get_str(j, "content", file, path, &s));
        PEFT_TRY(dup_str(s, &d->str, &d->str_len));
        PEFT_TRY(get_pattern(j, file, path, &d->pat));
    } else if (d->type == TOK_DEC_STRIP) {
        PEFT_TRY(get_char(j, "content", file, path, &d->ch));
        const cJSON *a = get(j, "start"), *b = get(j, "stop");
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble < 0 || b->valuedouble < 0 ||
            a->valuedouble > 1e6 || b->valuedouble > 1e6)
            return err_set(PEFT_EFORMAT, "%s: %s.start and .stop must be non-negative integers", file, path);
        d->start = (int)a->valuedouble;
        d->stop = (int)b->valuedouble;
    }
    return PEFT_OK;
}

int tok_load_pipeline(tokenizer *tk, const cJSON *root, const char *file) {
    const cJSON *v;
    if ((v = get(root, "normalizer"))) PEFT_TRY(parse_normalizer(tk, v, file, "normalizer"));
    if ((v = get(root, "pre_tokenizer"))) PEFT_TRY(parse_pretok(tk, v, file, "pre_tokenizer"));
    if ((v = get(root, "post_processor"))) PEFT_TRY(parse_post(tk, v, file, "post_processor"));
    if ((v = get(root, "decoder"))) {
        tk->has_decoder = true;
        PEFT_TRY(parse_decoder(tk, v, file, "decoder"));
    }
    return PEFT_OK;
}

void tok_pipeline_free(tokenizer *tk) {
    for (size_t i = 0; i < tk->n_norm; i++) {
        tok_pattern_free(&tk->norm[i].pat);
        free(tk->norm[i].str);
    }
    for (size_t i = 0; i < tk->n_pre; i++) tok_pattern_free(&tk->pre[i].pat);
    for (size_t i = 0; i < tk->n_dec; i++) {
        tok_pattern_free(&tk->dec[i].pat);
        free(tk->dec[i].str);
    }
    free(tk->norm);
    free(tk->pre);
    free(tk->dec);
    free(tk->post_prefix);
    free(tk->post_suffix);
}

static void fp_pattern(tok_fp *f, const tok_pattern *p) {
    tok_fp_int(f, p->re != NULL);
    tok_fp_str(f, p->lit ? p->lit : "", p->lit_len);
}

void tok_fp_pipeline(const tokenizer *tk, tok_fp *f) {
    tok_fp_int(f, (int64_t)tk->n_norm);
    for (size_t i = 0; i < tk->n_norm; i++) {
        const tok_normalizer *nm = &tk->norm[i];
        tok_fp_int(f, nm->type);
        tok_fp_str(f, nm->str ? nm->str : "", nm->str_len);
        fp_pattern(f, &nm->pat);
    }
    tok_fp_int(f, (int64_t)tk->n_pre);
    for (size_t i = 0; i < tk->n_pre; i++) {
        const tok_pretok *pt = &tk->pre[i];
        int64_t flags = pt->add_prefix_space | pt->use_regex << 1 | pt->invert << 2 | pt->split << 3;
        tok_fp_int(f, pt->type);
        tok_fp_int(f, flags);
        tok_fp_int(f, pt->behavior);
        tok_fp_int(f, pt->prepend);
        tok_fp_str(f, pt->rep, (size_t)pt->rep_len);
        fp_pattern(f, &pt->pat);
    }
    tok_fp_int(f, (int64_t)tk->n_prefix);
    for (size_t i = 0; i < tk->n_prefix; i++) tok_fp_int(f, tk->post_prefix[i]);
    tok_fp_int(f, (int64_t)tk->n_suffix);
    for (size_t i = 0; i < tk->n_suffix; i++) tok_fp_int(f, tk->post_suffix[i]);
}
