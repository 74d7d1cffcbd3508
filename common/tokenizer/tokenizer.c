/*
 * tokenizer.c - the public API: loading, the encode driver, decoding, lookups, the fingerprint.
 */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/file.h"
#include "io/json.h"

/* ---- loading --------------------------------------------------------------------------------- */

static int check_post_ids(const tokenizer *tk, const int32_t *v, size_t n, const char *path) {
    for (size_t i = 0; i < n; i++)
        if (v[i] >= tk->n_ids || tk->id_off[v[i]] == UINT32_MAX)
            return err_set(PEFT_EFORMAT, "%s: post_processor adds token id %d, which is not in the vocabulary", path,
                           v[i]);
    return PEFT_OK;
}

static int fingerprint(tokenizer *tk) {
    tok_fp f = tk->fp;
    uint32_t *entry = malloc((size_t)tk->n_ids * sizeof *entry);
    if (!entry) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate %d ids", tk->n_ids);
    for (int i = 0; i < tk->n_ids; i++) entry[i] = UINT32_MAX;
    for (size_t i = 0; i < tk->vocab.n; i++) entry[tk->vocab.e[i].id] = (uint32_t)i;
    tok_fp_int(&f, tk->n_ids);
    for (int i = 0; i < tk->n_ids; i++) {
        if (entry[i] == UINT32_MAX) continue;
        tok_fp_int(&f, i);
        tok_fp_str(&f, tk->arena + tk->vocab.e[entry[i]].off, tk->vocab.e[entry[i]].len);
    }
    free(entry);
    tok_fp_int(&f, tk->unk_id);
    tok_fp_int(&f, tk->fuse_unk | tk->byte_fallback << 1 | tk->ignore_merges << 2);
    tok_fp_int(&f, (int64_t)tk->n_added);
    for (size_t i = 0; i < tk->n_added; i++) {
        const tok_added *a = &tk->added[i];
        /* without a normalizer, "normalized" changes nothing */
        bool normalized = a->normalized && tk->n_norm > 0;
        tok_fp_int(&f, a->id);
        tok_fp_str(&f, tk->arena + a->off, a->len);
        tok_fp_int(&f, a->special | a->single_word << 1 | a->lstrip << 2 | a->rstrip << 3 | normalized << 4);
    }
    tok_fp_pipeline(tk, &f);
    snprintf(tk->fingerprint, sizeof tk->fingerprint, "%016llx", (unsigned long long)f.h);
    return PEFT_OK;
}

static int load_any(tokenizer *tk, const char *path, char *dir, size_t dir_cap) {
    char a[4096], b[4096];
    if (file_is_dir(path)) {
        snprintf(dir, dir_cap, "%s", path);
        PEFT_TRY(file_join(a, sizeof a, path, "tokenizer.json"));
        if (file_exists(a)) return tok_load_json(tk, a);
        PEFT_TRY(file_join(a, sizeof a, path, "vocab.json"));
        PEFT_TRY(file_join(b, sizeof b, path, "merges.txt"));
        if (!file_exists(a) || !file_exists(b))
            return err_set(PEFT_EIO, "%s: no tokenizer.json, and no vocab.json + merges.txt", path);
        PEFT_TRY(tok_load_gpt2(tk, a, b));
        PEFT_TRY(tok_build_tables(tk));
        tk->eos_id = tok_token_id(tk, "<|endoftext|>", 13);
        return PEFT_OK;
    }
    if (!file_exists(path)) return err_set(PEFT_EIO, "%s: no such file or directory", path);
    snprintf(dir, dir_cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, dir_cap, ".");
    return tok_load_json(tk, path);
}

static int tok_new(const char *name, tokenizer **out) {
    tokenizer *tk = calloc(1, sizeof *tk);
    if (!tk) return err_set(PEFT_ENOMEM, "%s: cannot allocate a tokenizer", name);
    tk->unk_id = tk->bos_id = tk->eos_id = -1;
    tk->fp.h = 0xCBF29CE484222325ull;
    tok_fp_str(&tk->fp, "peft-tokenizer-1", 16);
    tok_bytes_to_unicode(tk);
    *out = tk;
    return PEFT_OK;
}

/* What follows reading the files (rc is their status): tables, checks, tokenizer_config.json from
 * dir (none when dir is NULL), the fingerprint. Frees tk on error. */
static int tok_finish(tokenizer *tk, int rc, const char *path, const char *dir, tokenizer **out) {
    if (rc == PEFT_OK && !tk->id_off) rc = tok_build_tables(tk);
    if (rc == PEFT_OK) rc = check_post_ids(tk, tk->post_prefix, tk->n_prefix, path);
    if (rc == PEFT_OK) rc = check_post_ids(tk, tk->post_suffix, tk->n_suffix, path);
    if (rc == PEFT_OK && dir) rc = tok_load_config(tk, dir);
    if (rc == PEFT_OK) rc = fingerprint(tk);
    if (rc != PEFT_OK) {
        tokenizer_free(tk);
        return rc;
    }
    *out = tk;
    return PEFT_OK;
}

int tokenizer_load(const char *path, tokenizer **out) {
    *out = NULL;
    tokenizer *tk = NULL;
    PEFT_TRY(tok_new(path, &tk));
    char dir[4096];
    int rc = load_any(tk, path, dir, sizeof dir);
    return tok_finish(tk, rc, path, dir, out);
}

int tokenizer_load_memory(const char *name, const char *json, size_t len, tokenizer **out) {
    *out = NULL;
    cJSON *root;
    PEFT_TRY(json_parse_buffer(name, json, len, &root));
    tokenizer *tk = NULL;
    int rc = tok_new(name, &tk);
    if (rc == PEFT_OK) rc = tok_finish(tk, tok_parse_json(tk, root, name), name, NULL, out);
    cJSON_Delete(root);
    return rc;
}

void tokenizer_free(tokenizer *tk) {
    if (!tk) return;
    free(tk->arena);
    tok_strmap_free(&tk->vocab);
    free(tk->merges.slots);
    free(tk->char_id);
    free(tk->whole);
    free(tk->id_off);
    free(tk->id_len);
    free(tk->id_special);
    for (size_t i = 0; i < tk->n_added; i++) free(tk->added[i].norm);
    free(tk->added);
    tok_matcher_free(&tk->match_raw);
    tok_matcher_free(&tk->match_norm);
    pcre2_code_free(tk->word_re);
    tok_pipeline_free(tk);
    free(tk);
}

/* ---- encoding -------------------------------------------------------------------------------- */

/* Pre-tokenizes normalized text and runs BPE over every word. */
static int encode_words(const tokenizer *tk, tok_scratch *sc, const char *s, size_t n, bool first, tok_ids *ids) {
    const tok_pieces *ps;
    PEFT_TRY(tok_pretokenize(tk, sc, s, n, first, &ps));
    for (size_t i = 0; i < ps->n; i++) PEFT_TRY(tok_bpe_word(tk, sc, ps->text.p + ps->v[i].off, ps->v[i].len, ids));
    return PEFT_OK;
}

/* One stretch of raw text between added tokens: normalize, then split on normalized added tokens. */
static int encode_segment(const tokenizer *tk, tok_scratch *sc, const char *s, size_t n, bool first, tok_ids *ids) {
    const char *norm;
    size_t nn;
    PEFT_TRY(tok_normalize(tk, sc, s, n, &norm, &nn));
    if (tk->match_norm.n == 0) return encode_words(tk, sc, norm, nn, first, ids);
    PEFT_TRY(tok_added_split(tk, &tk->match_norm, norm, nn, sc->md, &sc->nsegs));
    for (size_t i = 0; i < sc->nsegs.n; i++) {
        const tok_seg *g = &sc->nsegs.v[i];
        if (g->id >= 0) PEFT_TRY(tok_ids_push(ids, g->id));
        else PEFT_TRY(encode_words(tk, sc, norm + g->start, g->end - g->start, first && g->start == 0, ids));
    }
    return PEFT_OK;
}

int tokenizer_encode(const tokenizer *tk, const char *text, size_t len, bool add_special, tok_ids *ids) {
    size_t bad = utf8_check(text, len);
    if (bad < len)
        return err_set(PEFT_EFORMAT, "tokenizer: input is not valid UTF-8 at byte %zu (0x%02x)", bad,
                       (unsigned char)text[bad]);
    tok_scratch sc;
    PEFT_TRY(tok_scratch_init(&sc));
    size_t n0 = ids->n;
    int rc = add_special ? tok_ids_append(ids, tk->post_prefix, tk->n_prefix) : PEFT_OK;
    if (rc == PEFT_OK) rc = tok_added_split(tk, &tk->match_raw, text, len, sc.md, &sc.segs);
    for (size_t i = 0; i < sc.segs.n && rc == PEFT_OK; i++) {
        const tok_seg *g = &sc.segs.v[i];
        if (g->id >= 0) rc = tok_ids_push(ids, g->id);
        else rc = encode_segment(tk, &sc, text + g->start, g->end - g->start, g->start == 0, ids);
    }
    if (rc == PEFT_OK && add_special) rc = tok_ids_append(ids, tk->post_suffix, tk->n_suffix);
    if (rc != PEFT_OK) ids->n = n0;
    tok_scratch_free(&sc);
    return rc;
}

/* ---- decoding -------------------------------------------------------------------------------- */

int tokenizer_decode(const tokenizer *tk, const int32_t *ids, size_t n, bool skip_special, char **text,
                     size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    const char **tok = malloc((n + 1) * sizeof *tok);
    size_t *tl = malloc((n + 1) * sizeof *tl), k = 0;
    tok_buf out = {0};
    int rc = tok && tl ? PEFT_OK : err_set(PEFT_ENOMEM, "tokenizer: cannot decode %zu ids", n);
    for (size_t i = 0; i < n && rc == PEFT_OK; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tk->n_ids || tk->id_off[id] == UINT32_MAX) {
            rc = err_set(PEFT_EFORMAT, "tokenizer: id %d at position %zu is not in the vocabulary (size %d)", id, i,
                         tk->n_ids);
            break;
        }
        if (skip_special && tk->id_special[id]) continue;
        tok[k] = tk->arena + tk->id_off[id];
        tl[k++] = tk->id_len[id];
    }
    if (rc == PEFT_OK) rc = tok_decode_tokens(tk, tok, tl, k, &out);
    if (rc == PEFT_OK) rc = tok_buf_append(&out, "", 1); /* the NUL */
    free(tok);
    free(tl);
    if (rc != PEFT_OK) {
        free(out.p);
        return rc;
    }
    *text = out.p;
    if (len) *len = out.n - 1;
    return PEFT_OK;
}

/* ---- lookups --------------------------------------------------------------------------------- */

int tokenizer_vocab_size(const tokenizer *tk) { return tk->n_ids; }

int tokenizer_token_to_id(const tokenizer *tk, const char *token) {
    return tok_token_id(tk, token, strlen(token));
}

const char *tokenizer_id_to_token(const tokenizer *tk, int id) {
    if (id < 0 || id >= tk->n_ids || tk->id_off[id] == UINT32_MAX) return NULL;
    return tk->arena + tk->id_off[id];
}

int tokenizer_bos_id(const tokenizer *tk) { return tk->bos_id; }
int tokenizer_eos_id(const tokenizer *tk) { return tk->eos_id; }
const char *tokenizer_fingerprint(const tokenizer *tk) { return tk->fingerprint; }
