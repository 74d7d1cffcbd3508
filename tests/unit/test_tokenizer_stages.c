/*
 * test_tokenizer_stages.c - Hugging Face BPE tokenizers (common/tokenizer/), stage by stage, on
 * hand-made tokenizer.json strings: a tiny byte-level (GPT-2 style) and a tiny SentencePiece-style
 * tokenizer, the fingerprint, each pre-tokenizer, the added tokens and the decoders on the cases
 * Hugging Face's own unit tests use, and the two BPE merge loops against each other.
 *
 * The rest of the tokenizer's tests: test_tokenizer.c (HF's own outputs on real and small
 * tokenizers, and threads), test_tokenizer_unicode.c (UTF-8 and NFC), test_tokenizer_errors.c (what
 * a bad tokenizer.json or input gets).
 */
#include "testutil.h"
#include "tu_tokenizer.h"

#include "error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The pre-tokenizer's pieces of s joined with '|'. */
static void expect_pieces(const tokenizer *tk, const char *s, bool first, const char *want) {
    tok_scratch sc;
    assert_int_equal(tok_scratch_init(&sc), PEFT_OK);
    const tok_pieces *ps;
    assert_int_equal(tok_pretokenize(tk, &sc, s, strlen(s), first, &ps), PEFT_OK);
    char got[1024] = "";
    size_t at = 0;
    for (size_t i = 0; i < ps->n && at + ps->v[i].len + 2 < sizeof got; i++) {
        if (i) got[at++] = '|';
        memcpy(got + at, ps->text.p + ps->v[i].off, ps->v[i].len);
        at += ps->v[i].len;
        got[at] = '\0';
    }
    tok_scratch_free(&sc);
    if (strcmp(got, want) != 0)
        fail_msg("pre-tokenize(\"%s\", first=%d): got \"%s\", want \"%s\"", s, first, got, want);
}

/* ---- a tiny byte-level tokenizer (GPT-2 style): tu_tokenizer.h's TU_TINY_BYTELEVEL ----------- */

static void test_bytelevel_tiny(void **state) {
    (void)state;
    tokenizer *tk = tu_tok_load_str(TU_TINY_BYTELEVEL);
    TU_EXPECT_IDS(tk, "hello world", false, 11, 16);
    TU_EXPECT_IDS(tk, "hello world", true, 17, 11, 16);
    /* \s+(?!\S) leaves the last space to the word: "hello", " ", " world" */
    TU_EXPECT_IDS(tk, "hello  world", false, 11, 4, 16);
    TU_EXPECT_IDS(tk, "<s>hello<s> world", false, 17, 11, 17, 16);
    TU_EXPECT_IDS(tk, "", true, 17);
    TU_EXPECT_DECODE(tk, false, "hello world", 11, 16);
    TU_EXPECT_DECODE(tk, false, "<s>hello  world", 17, 11, 4, 16);
    TU_EXPECT_DECODE(tk, true, "hello  world", 17, 11, 4, 16);
    assert_int_equal(tokenizer_vocab_size(tk), 18);
    assert_int_equal(tokenizer_token_to_id(tk, "<s>"), 17);
    assert_int_equal(tokenizer_token_to_id(tk, "\xC4\xA0world"), 16);
    assert_int_equal(tokenizer_token_to_id(tk, "nope"), -1);
    assert_string_equal(tokenizer_id_to_token(tk, 11), "hello");
    assert_null(tokenizer_id_to_token(tk, 18));
    assert_null(tokenizer_id_to_token(tk, -1));
    assert_int_equal(tokenizer_bos_id(tk), -1);
    assert_int_equal(tokenizer_eos_id(tk), -1);
    int32_t bad[] = {11, 18};
    char *s = NULL;
    tu_expect_error(tokenizer_decode(tk, bad, 2, false, &s, NULL), PEFT_EFORMAT, "id 18 at position 1", NULL, NULL);
    assert_null(s);
    tokenizer_free(tk);
}

static void test_fingerprint(void **state) {
    (void)state;
    tokenizer *tk = tu_tok_load_str(TU_TINY_BYTELEVEL);
    char fp[17];
    snprintf(fp, sizeof fp, "%s", tokenizer_fingerprint(tk));
    assert_int_equal(strlen(fp), 16);
    tokenizer_free(tk);

    /* the decoder does not change ids: same fingerprint */
    char *j = strdup(TU_TINY_BYTELEVEL);
    assert_non_null(j);
    char *d = strstr(j, "'decoder':{'type':'ByteLevel'}");
    assert_non_null(d);
    memcpy(d, "'decoder':null                ", 30);
    tk = tu_tok_load_str(j);
    assert_string_equal(tokenizer_fingerprint(tk), fp);
    tokenizer_free(tk);
    /* the order of two merges does */
    char *m = strstr(j, "'h e','l l'");
    assert_non_null(m);
    memcpy(m, "'l l','h e'", 11);
    tk = tu_tok_load_str(j);
    if (!strcmp(tokenizer_fingerprint(tk), fp)) fail_msg("changing a merge kept fingerprint %s", fp);
    tokenizer_free(tk);
    free(j);
}

/* ---- SentencePiece style: Prepend/Replace normalizer, byte_fallback, unk -------------------- */

static const char *TINY_SP =
    "{'added_tokens':[{'id':0,'content':'<unk>','special':true,'normalized':false},"
    "{'id':1,'content':'<s>','special':true,'normalized':false}],"
    "'normalizer':{'type':'Sequence','normalizers':[{'type':'Prepend','prepend':'\\u2581'},"
    "{'type':'Replace','pattern':{'String':' '},'content':'\\u2581'}]},"
    "'pre_tokenizer':null,'post_processor':null,"
    "'decoder':{'type':'Sequence','decoders':[{'type':'Replace','pattern':{'String':'\\u2581'},'content':' '},"
    "{'type':'ByteFallback'},{'type':'Fuse'},{'type':'Strip','content':' ','start':1,'stop':0}]},"
    "'model':{'type':'BPE','vocab':{'<unk>':0,'<s>':1,'<0xC3>':2,'<0xA9>':3,'\\u2581':4,'h':5,'i':6,"
    "'\\u2581h':7,'\\u2581hi':8},'merges':[['\\u2581','h'],['\\u2581h','i']],"
    "'unk_token':'<unk>','fuse_unk':FUSE,'byte_fallback':true}}";

static tokenizer *load_sp(bool fuse) {
    char *j = strdup(TINY_SP), *f = strstr(j, "FUSE");
    char buf[2048];
    *f = '\0';
    snprintf(buf, sizeof buf, "%s%s%s", j, fuse ? "true" : "false", f + 4);
    free(j);
    return tu_tok_load_str(buf);
}

static void test_sentencepiece_tiny(void **state) {
    (void)state;
    tokenizer *tk = load_sp(true);
    /* "▁hi▁é": é is not in the vocabulary but its bytes are */
    TU_EXPECT_IDS(tk, "hi \xC3\xA9", false, 8, 4, 2, 3);
    /* ü: <0xBC> is missing, so it is <unk>; two in a row fuse */
    TU_EXPECT_IDS(tk, "\xC3\xBC\xC3\xBC", false, 4, 0);
    TU_EXPECT_IDS(tk, "hi\xC3\xBC\xC3\xBCh", false, 8, 0, 5);
    /* the normalizer runs per segment between added tokens: each gets its "▁" */
    TU_EXPECT_IDS(tk, "hi<s>hi", false, 8, 1, 8);
    TU_EXPECT_DECODE(tk, false, "hi \xC3\xA9", 8, 4, 2, 3);
    /* an invalid byte group is one U+FFFD per byte token */
    TU_EXPECT_DECODE(tk, false, "hi\xEF\xBF\xBD\xEF\xBF\xBD", 8, 2, 2);
    TU_EXPECT_DECODE(tk, false, "\xEF\xBF\xBD \xC3\xA9", 3, 4, 2, 3);
    TU_EXPECT_DECODE(tk, false, "<s> hi", 1, 8);
    TU_EXPECT_DECODE(tk, true, "hi", 1, 8);
    tokenizer_free(tk);

    tk = load_sp(false);
    TU_EXPECT_IDS(tk, "\xC3\xBC\xC3\xBC", false, 4, 0, 0);
    tokenizer_free(tk);
}

/* ---- pre-tokenizers, each on the cases of HF's own tests ------------------------------------- */

static tokenizer *load_pretok(const char *pretok) {
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{'pre_tokenizer':%s,'model':{'type':'BPE','vocab':{'a':0},'merges':[]," TU_MODEL_TAIL "}", pretok);
    return tu_tok_load_str(buf);
}

static void test_pretokenizers(void **state) {
    (void)state;
    static const char *const behaviors[][2] = {
        {"Removed", "the|final|countdown"},
        {"Isolated", "the|-|final|-|-|countdown"},
        {"MergedWithPrevious", "the-|final-|-|countdown"},
        {"MergedWithNext", "the|-final|-|-countdown"},
        {"Contiguous", "the|-|final|--|countdown"},
    };
    for (int i = 0; i < 5; i++) {
        char pt[256];
        snprintf(pt, sizeof pt, "{'type':'Split','pattern':{'String':'-'},'behavior':'%s','invert':false}",
                 behaviors[i][0]);
        tokenizer *tk = load_pretok(pt);
        expect_pieces(tk, "the-final--countdown", true, behaviors[i][1]);
        tokenizer_free(tk);
    }
    tokenizer *tk = load_pretok("{'type':'Split','pattern':{'Regex':'-+'},'behavior':'Removed','invert':true}");
    expect_pieces(tk, "the-final--countdown", true, "-|--");
    tokenizer_free(tk);

    tk = load_pretok("{'type':'Metaspace','replacement':'\\u2581','prepend_scheme':'always','split':true}");
    expect_pieces(tk, "Hey friend!", true, "\xE2\x96\x81Hey|\xE2\x96\x81" "friend!");
    expect_pieces(tk, "Hey   friend!", false, "\xE2\x96\x81Hey|\xE2\x96\x81|\xE2\x96\x81|\xE2\x96\x81" "friend!");
    tokenizer_free(tk);
    tk = load_pretok("{'type':'Metaspace','replacement':'\\u2581','prepend_scheme':'first','split':false}");
    expect_pieces(tk, "Hey my friend ", true, "\xE2\x96\x81Hey\xE2\x96\x81my\xE2\x96\x81" "friend\xE2\x96\x81");
    expect_pieces(tk, "how are you", false, "how\xE2\x96\x81" "are\xE2\x96\x81you");
    tokenizer_free(tk);
    /* the pre-0.19 spelling */
    tk = load_pretok("{'type':'Metaspace','replacement':'\\u2581','add_prefix_space':false}");
    expect_pieces(tk, "a b", true, "a|\xE2\x96\x81" "b");
    tokenizer_free(tk);

    tk = load_pretok("{'type':'Digits','individual_digits':true}");
    expect_pieces(tk, "Hey 123 friend!", true, "Hey |1|2|3| friend!");
    tokenizer_free(tk);
    tk = load_pretok("{'type':'Digits','individual_digits':false}");
    expect_pieces(tk, "Hey 123 friend!", true, "Hey |123| friend!");
    tokenizer_free(tk);

    tk = load_pretok("{'type':'ByteLevel','add_prefix_space':true,'use_regex':true}");
    expect_pieces(tk, "Hello my friend, how is your day going?", true,
                  "\xC4\xA0Hello|\xC4\xA0my|\xC4\xA0" "friend|,|\xC4\xA0how|\xC4\xA0is|\xC4\xA0your|\xC4\xA0"
                  "day|\xC4\xA0going|?");
    expect_pieces(tk, "Hello there\nHello there", true,
                  "\xC4\xA0Hello|\xC4\xA0there|\xC4\x8A|Hello|\xC4\xA0there");
    expect_pieces(tk, "Hello   there", true, "\xC4\xA0Hello|\xC4\xA0\xC4\xA0|\xC4\xA0there");
    expect_pieces(tk, "I'm \xC3\xA9t\xC3\xA9", true, "\xC4\xA0I|'m|\xC4\xA0\xC3\x83\xC2\xA9t\xC3\x83\xC2\xA9");
    tokenizer_free(tk);
    tk = load_pretok("{'type':'ByteLevel','add_prefix_space':false,'use_regex':false}");
    expect_pieces(tk, "a b\n", true, "a\xC4\xA0" "b\xC4\x8A");
    tokenizer_free(tk);
}

/* ---- added tokens (HF's added_vocabulary.rs cases) ------------------------------------------- */

static void split_str(const tokenizer *tk, const char *s, char *out, size_t cap) {
    tok_segs segs = {0};
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    assert_int_equal(tok_added_split(tk, &tk->match_raw, s, strlen(s), md, &segs), PEFT_OK);
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < segs.n; i++)
        at += (size_t)snprintf(out + at, cap - at, "%s[%.*s]%s", i ? " " : "", (int)(segs.v[i].end - segs.v[i].start),
                               s + segs.v[i].start, segs.v[i].id >= 0 ? "*" : "");
    free(segs.v);
    pcre2_match_data_free(md);
}

static tokenizer *load_added(const char *flags) {
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{'added_tokens':[{'id':1,'content':'<mask>','special':true,'normalized':false,%s},"
             "{'id':2,'content':'<mask><b>','special':true,'normalized':false},"
             "{'id':3,'content':'a b','special':false,'normalized':true}],"
             "'normalizer':{'type':'Replace','pattern':{'String':' '},'content':'_'},"
             "'model':{'type':'BPE','vocab':{'a':0},'merges':[]," TU_MODEL_TAIL "}",
             flags);
    return tu_tok_load_str(buf);
}

static void expect_split(const tokenizer *tk, const char *s, const char *want) {
    char got[1024];
    split_str(tk, s, got, sizeof got);
    if (strcmp(got, want) != 0) fail_msg("added-token split of \"%s\": got %s, want %s", s, got, want);
}

static void test_added_tokens(void **state) {
    (void)state;
    tokenizer *tk = load_added("'single_word':true,'lstrip':false,'rstrip':false");
    expect_split(tk, "<mask> My name <mask> A<mask> <mask>ony <mask>",
                 "[<mask>]* [ My name ] [<mask>]* [ A<mask> <mask>ony ] [<mask>]*");
    /* punctuation is not a word character, a combining mark is */
    expect_split(tk, "<mask>, <mask>- \xE2\x97\x8C\xCC\xB0<mask>",
                 "[<mask>]* [, ] [<mask>]* [- \xE2\x97\x8C\xCC\xB0<mask>]");
    /* longest match first */
    expect_split(tk, "x<mask><b>y", "[x] [<mask><b>]* [y]");
    tokenizer_free(tk);

    tk = load_added("'single_word':true,'lstrip':true,'rstrip':true");
    expect_split(tk, "Hi <mask> there\t<mask>\t<mask>\xE2\x80\x80",
                 "[Hi] [ <mask> ]* [there] [\t<mask>\t]* [<mask>\xE2\x80\x80]*");
    tokenizer_free(tk);

    /* ids as HF assigns them, whatever the file says: the model's id for a token it has, else the
     * next one after the model and the added tokens so far */
    tk = tu_tok_load_str("{'added_tokens':[{'id':7,'content':'b'},{'id':9,'content':'<x>'},{'id':5,'content':'<y>'}],"
                  "'model':{'type':'BPE','vocab':{'a':0,'b':1},'merges':[]," TU_MODEL_TAIL "}");
    assert_int_equal(tokenizer_token_to_id(tk, "b"), 1);
    assert_int_equal(tokenizer_token_to_id(tk, "<x>"), 2);
    assert_int_equal(tokenizer_token_to_id(tk, "<y>"), 3);
    assert_int_equal(tokenizer_vocab_size(tk), 4);
    TU_EXPECT_IDS(tk, "ab<y>", false, 0, 1, 3);
    tokenizer_free(tk);

    /* a normalized token matches the normalized text: "a b" is looked for as "a_b" */
    tk = load_added("'single_word':false");
    tok_ids ids = {0};
    assert_int_equal(tokenizer_encode(tk, "a ba b", 6, false, &ids), PEFT_OK);
    /* normalized to "a_ba_b", which holds "a_b" twice */
    int32_t want[] = {3, 3};
    if (!tu_same_ids(ids.v, ids.n, want, 2)) {
        char g[256];
        tu_ids_str(ids.v, ids.n, g, sizeof g);
        fail_msg("normalized added token: got [%s], want [3,3]", g);
    }
    free(ids.v);
    tokenizer_free(tk);
}

/* ---- decoders -------------------------------------------------------------------------------- */

static void test_decoders(void **state) {
    (void)state;
    tokenizer *tk = tu_tok_load_str(
        "{'decoder':{'type':'Metaspace','replacement':'\\u2581','prepend_scheme':'always','split':true},"
        "'model':{'type':'BPE','vocab':{'\\u2581Hey':0,'\\u2581friend!':1,'\\u2581\\u2581':2},'merges':[],"
        TU_MODEL_TAIL "}");
    TU_EXPECT_DECODE(tk, false, "Hey friend!", 0, 1);
    /* the first token loses every replacement character, the others turn them into spaces */
    TU_EXPECT_DECODE(tk, false, "   Hey", 2, 2, 0);
    tokenizer_free(tk);
    tk = tu_tok_load_str(
        "{'decoder':{'type':'Metaspace','replacement':'\\u2581','prepend_scheme':'never'},"
        "'model':{'type':'BPE','vocab':{'\\u2581Hey':0,'\\u2581friend!':1},'merges':[]," TU_MODEL_TAIL "}");
    TU_EXPECT_DECODE(tk, false, " Hey friend!", 0, 1);
    tokenizer_free(tk);
    tk = tu_tok_load_str(
        "{'decoder':{'type':'Sequence','decoders':[{'type':'Strip','content':'x','start':2,'stop':1},"
        "{'type':'Replace','pattern':{'Regex':'[0-9]+'},'content':'#'}]},"
        "'model':{'type':'BPE','vocab':{'xxxa12bx':0,'xx':1,'q':2},'merges':[]," TU_MODEL_TAIL "}");
    TU_EXPECT_DECODE(tk, false, "xa#bq", 0, 2);
    TU_EXPECT_DECODE(tk, false, "", 1);
    tokenizer_free(tk);
    /* no decoder: tokens joined by spaces */
    tk = tu_tok_load_str("{'model':{'type':'BPE','vocab':{'ab':0,'c':1},'merges':[]," TU_MODEL_TAIL "}");
    TU_EXPECT_DECODE(tk, false, "ab c ab", 0, 1, 0);
    tokenizer_free(tk);
    /* ByteLevel: tokens that are not all byte characters are kept as they are; invalid UTF-8 is
     * replaced per maximal subpart (Rust's from_utf8_lossy) */
    tk = tu_tok_load_str("{'decoder':{'type':'ByteLevel'},'model':{'type':'BPE','vocab':{'\\u00e2\\u0124':0,"
                  "'\\u0142':1,'<\\u2603>':2,'\\u00c3':3,'\\u00a9':4},'merges':[]," TU_MODEL_TAIL "}");
    /* bytes E2 82 (a cut sequence), then "<☃>" as is, then A0 (a stray continuation byte) */
    TU_EXPECT_DECODE(tk, false, "\xEF\xBF\xBD<\xE2\x98\x83>\xEF\xBF\xBD", 0, 2, 1);
    TU_EXPECT_DECODE(tk, false, "\xC3\xA9", 3, 4);
    tokenizer_free(tk);
}

/* ---- BPE merge loops -------------------------------------------------------------------------- */

static void test_bpe_merge_loops(void **state) {
    (void)state;
    /* "aaa...": (a,a) then (aa,aa), leftmost first */
    tokenizer *tk = tu_tok_load_str("{'model':{'type':'BPE','vocab':{'a':0,'aa':1,'aaaa':2,'b':3,'ab':4},"
                             "'merges':['a a','aa aa','a b']," TU_MODEL_TAIL "}");
    TU_EXPECT_IDS(tk, "aaa", false, 1, 0);
    TU_EXPECT_IDS(tk, "aaaaaaa", false, 2, 1, 0);
    TU_EXPECT_IDS(tk, "aab", false, 1, 3);
    TU_EXPECT_IDS(tk, "aaab", false, 1, 4);
    /* the same words through both loops, long ones through the heap only */
    tok_scratch sc;
    assert_int_equal(tok_scratch_init(&sc), PEFT_OK);
    srand(7);
    for (int t = 0; t < 2000; t++) {
        int32_t a[TOK_BPE_SMALL], b[TOK_BPE_SMALL];
        size_t n = 1 + (size_t)(rand() % TOK_BPE_SMALL), na = n, nb = n;
        for (size_t i = 0; i < n; i++) a[i] = b[i] = rand() % 4 == 0 ? 3 : 0;
        assert_int_equal(tok_bpe_merge_small(&tk->merges, a, &na), PEFT_OK);
        assert_int_equal(tok_bpe_merge_heap(&tk->merges, &sc, b, &nb), PEFT_OK);
        if (!tu_same_ids(a, na, b, nb)) {
            char x[1024], y[1024];
            tu_ids_str(a, na, x, sizeof x);
            tu_ids_str(b, nb, y, sizeof y);
            fail_msg("merge loops disagree on a %zu-symbol word: small [%s], heap [%s]", n, x, y);
        }
    }
    char *longw = malloc(5001);
    memset(longw, 'a', 5000);
    longw[5000] = '\0';
    tok_ids ids = {0};
    assert_int_equal(tokenizer_encode(tk, longw, 5000, false, &ids), PEFT_OK);
    assert_int_equal(ids.n, 1250);
    for (size_t i = 0; i < ids.n; i++) assert_int_equal(ids.v[i], 2);
    free(ids.v);
    free(longw);
    tok_scratch_free(&sc);
    tokenizer_free(tk);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytelevel_tiny),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_sentencepiece_tiny),
        cmocka_unit_test(test_pretokenizers),
        cmocka_unit_test(test_added_tokens),
        cmocka_unit_test(test_decoders),
        cmocka_unit_test(test_bpe_merge_loops),
    };
    return cmocka_run_group_tests(tests, tu_tok_setup, tu_tok_teardown);
}
