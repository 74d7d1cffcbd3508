#include "tu_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "testutil.h"

const char *const TU_TINY_BYTELEVEL =
    "{'added_tokens':[{'id':17,'content':'<s>','special':true,'normalized':false,'lstrip':false,"
    "'rstrip':false,'single_word':false}],"
    "'normalizer':null,"
    "'pre_tokenizer':{'type':'ByteLevel','add_prefix_space':false,'trim_offsets':true,'use_regex':true},"
    "'post_processor':{'type':'Sequence','processors':[{'type':'ByteLevel','trim_offsets':false},"
    "{'type':'TemplateProcessing','single':[{'SpecialToken':{'id':'<s>','type_id':0}},"
    "{'Sequence':{'id':'A','type_id':0}}],'special_tokens':{'<s>':{'id':'<s>','ids':[17],'tokens':['<s>']}}}]},"
    "'decoder':{'type':'ByteLevel'},"
    "'model':{'type':'BPE','dropout':null,'vocab':{'h':0,'e':1,'l':2,'o':3,'\\u0120':4,'w':5,'r':6,'d':7,"
    "'he':8,'ll':9,'llo':10,'hello':11,'\\u0120w':12,'or':13,'\\u0120wor':14,'\\u0120worl':15,'\\u0120world':16},"
    "'merges':['h e','l l','ll o','he llo','\\u0120 w','o r','\\u0120w or','\\u0120wor l','\\u0120worl d'],"
    TU_MODEL_TAIL "}";

char *tu_tok_dir;

int tu_tok_setup(void **state) {
    (void)state;
    tu_tok_dir = tu_tmpdir();
    return 0;
}

int tu_tok_teardown(void **state) {
    (void)state;
    tu_rmtree(tu_tok_dir);
    free(tu_tok_dir);
    tu_tok_dir = NULL;
    return 0;
}

int tu_tok_load_str_as(const char *json, const char *name, tokenizer **tk) {
    if (!tu_tok_dir) fail_msg("tu_tok_load_str_as: no directory (tu_tok_setup is not the group's setup)");
    char *q = strdup(json), path[4096];
    assert_non_null(q);
    for (char *p = q; *p; p++)
        if (*p == '\'') *p = '"';
    snprintf(path, sizeof path, "%s/%s", tu_tok_dir, name);
    tu_write_file(path, q, strlen(q));
    free(q);
    return tokenizer_load(path, tk);
}

tokenizer *tu_tok_load_str(const char *json) {
    tokenizer *tk = NULL;
    int rc = tu_tok_load_str_as(json, "tokenizer.json", &tk);
    if (rc != PEFT_OK) fail_msg("tokenizer_load failed (%d): %s", rc, err_msg());
    return tk;
}

bool tu_same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

void tu_ids_str(const int32_t *v, size_t n, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && at + 16 < cap; i++) at += (size_t)snprintf(buf + at, cap - at, i ? ",%d" : "%d", v[i]);
}

void tu_expect_ids(const tokenizer *tk, const char *text, bool special, const int32_t *want, size_t nwant) {
    tok_ids ids = {0};
    int rc = tokenizer_encode(tk, text, strlen(text), special, &ids);
    if (rc != PEFT_OK) fail_msg("encode(\"%s\") failed: %s", text, err_msg());
    if (!tu_same_ids(ids.v, ids.n, want, nwant)) {
        char g[1024], w[1024];
        tu_ids_str(ids.v, ids.n, g, sizeof g);
        tu_ids_str(want, nwant, w, sizeof w);
        fail_msg("encode(\"%s\", special=%d): got [%s], want [%s]", text, special, g, w);
    }
    free(ids.v);
}

void tu_expect_decode(const tokenizer *tk, const int32_t *ids, size_t n, bool skip, const char *want) {
    char *s = NULL;
    size_t len;
    int rc = tokenizer_decode(tk, ids, n, skip, &s, &len);
    if (rc != PEFT_OK) fail_msg("decode failed: %s", err_msg());
    if (len != strlen(want) || strcmp(s, want) != 0) fail_msg("decode: got \"%s\", want \"%s\"", s, want);
    free(s);
}
