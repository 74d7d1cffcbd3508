/*
 * test_tokenizer_errors.c - what the tokenizer loader and encoder say about bad input: each
 * unsupported or malformed part of a tokenizer.json, a missing directory, invalid UTF-8 input, and
 * tokenizer_config.json's special tokens; every error has the right status and names the key.
 */
#include "testutil.h"
#include "tu_tokenizer.h"

#include "error.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* tu_tok_load_str_as() into tokenizer.json */
static int load(const char *json, tokenizer **tk) { return tu_tok_load_str_as(json, "tokenizer.json", tk); }

/* Loading json fails with `status` and a message containing `phrase`. */
static void expect_load_error(const char *json, int status, const char *phrase) {
    tokenizer *tk = NULL;
    tu_expect_error(load(json, &tk), status, phrase, NULL, NULL);
}

static void test_errors(void **state) {
    (void)state;
    tokenizer *tk = NULL;
    tu_expect_error(load("{'model':{'type':'WordPiece','vocab':{'a':0}}}", &tk), PEFT_EUNSUPPORTED,
                    "tokenizer.json: model.type 'WordPiece' is not supported (BPE only)", NULL, NULL);
    assert_null(tk);
    expect_load_error("{'pre_tokenizer':{'type':'Sequence','pretokenizers':[{'type':'Digits'},"
                      "{'type':'Whitespace'}]},'model':{'type':'BPE','vocab':{'a':0},'merges':[]}}",
                      PEFT_EUNSUPPORTED, "tokenizer.json: pre_tokenizer.pretokenizers[1].type 'Whitespace'");
    expect_load_error("{'normalizer':{'type':'Lowercase'},'model':{'type':'BPE','vocab':{'a':0},'merges':[]}}",
                      PEFT_EUNSUPPORTED, "normalizer.type 'Lowercase'");
    expect_load_error("{'decoder':{'type':'WordPiece'},'model':{'type':'BPE','vocab':{'a':0},'merges':[]}}",
                      PEFT_EUNSUPPORTED, "decoder.type 'WordPiece'");
    expect_load_error("{'post_processor':{'type':'BertProcessing'},'model':{'type':'BPE','vocab':{'a':0},"
                      "'merges':[]}}",
                      PEFT_EUNSUPPORTED, "post_processor.type 'BertProcessing'");
    expect_load_error("{'post_processor':{'type':'Sequence','processors':[{'type':'TemplateProcessing',"
                      "'single':[{'Sequence':{'id':'A'}}]},{'type':'TemplateProcessing','single':"
                      "[{'Sequence':{'id':'A'}}]}]},'model':{'type':'BPE','vocab':{'a':0},'merges':[]}}",
                      PEFT_EUNSUPPORTED, "post_processor.processors[1]: a second TemplateProcessing");
    expect_load_error("{'model':{'type':'BPE','vocab':{'a':0,'b':1,'ab':2},'merges':['a b','b c']}}", PEFT_EFORMAT,
                      "model.merges[1]: 'c' is not in the vocabulary");
    expect_load_error("{'model':{'type':'BPE','vocab':{'a':0,'b':1},'merges':['a b']}}", PEFT_EFORMAT,
                      "model.merges[0]: 'ab' is not in the vocabulary");
    expect_load_error("{'model':{'type':'BPE','vocab':{'a':-1},'merges':[]}}", PEFT_EFORMAT, "model.vocab['a']");
    expect_load_error("{'model':{'type':'BPE','vocab':{'a':0,'b':16777216},'merges':[]}}", PEFT_EFORMAT,
                      "model.vocab['b'] must be a token id");
    expect_load_error("{'model':{'type':'BPE','vocab':{'a':0,'\xC3(':1},'merges':[]}}", PEFT_EFORMAT,
                      "model.vocab: token id 1 is not valid UTF-8");
    expect_load_error("{'added_tokens':[{'id':1,'content':'\xFF'}],'model':{'type':'BPE','vocab':{'a':0},"
                      "'merges':[]}}",
                      PEFT_EFORMAT, "added_tokens[0].content is not valid UTF-8");
    expect_load_error("{'model':{'type':'BPE','vocab':{'a':0},'merges':['a']}}", PEFT_EFORMAT, "model.merges[0] 'a'");
    expect_load_error("{'model':{'type':'BPE','vocab':{'a':0},'merges':[],'unk_token':'<unk>'}}", PEFT_EFORMAT,
                      "model.unk_token '<unk>'");
    expect_load_error("{'pre_tokenizer':{'type':'Split','pattern':{'Regex':'(['},'behavior':'Isolated'},"
                      "'model':{'type':'BPE','vocab':{'a':0},'merges':[]}}",
                      PEFT_EUNSUPPORTED, "pre_tokenizer.pattern: regex '(['");
    expect_load_error("{'model':", PEFT_EFORMAT, "tokenizer.json: invalid JSON");
    char path[4200];
    snprintf(path, sizeof path, "%s/missing", tu_tok_dir);
    tu_expect_error(tokenizer_load(path, &tk), PEFT_EIO, path, NULL, NULL);
    snprintf(path, sizeof path, "%s/empty", tu_tok_dir);
    assert_int_equal(mkdir(path, 0755), 0);
    tu_expect_error(tokenizer_load(path, &tk), PEFT_EIO, "no tokenizer.json, and no vocab.json + merges.txt", NULL,
                    NULL);
    assert_null(tk);

    /* invalid UTF-8 input names the byte offset and leaves the ids alone */
    tk = tu_tok_load_str(TU_TINY_BYTELEVEL);
    tok_ids ids = {0};
    assert_int_equal(tokenizer_encode(tk, "he", 2, false, &ids), PEFT_OK);
    tu_expect_error(tokenizer_encode(tk, "hello \xC3(", 7, true, &ids), PEFT_EFORMAT, "not valid UTF-8 at byte 6",
                    NULL, NULL);
    tu_expect_error(tokenizer_encode(tk, "\xED\xA0\x80", 3, false, &ids), PEFT_EFORMAT, "at byte 0", NULL, NULL);
    assert_int_equal(ids.n, 1);
    free(ids.v);
    tokenizer_free(tk);
    tokenizer_free(NULL);

    /* tokenizer_config.json: strings or {"content": ...}; unknown tokens are an error */
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tu_tok_dir);
    const char *cfg = "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"hello\"}";
    tu_write_file(path, cfg, strlen(cfg));
    tk = tu_tok_load_str(TU_TINY_BYTELEVEL);
    assert_int_equal(tokenizer_bos_id(tk), 17);
    assert_int_equal(tokenizer_eos_id(tk), 11);
    tokenizer_free(tk);
    cfg = "{\"bos_token\": null, \"eos_token\": \"</s>\"}";
    tu_write_file(path, cfg, strlen(cfg));
    tu_expect_error(load(TU_TINY_BYTELEVEL, &tk), PEFT_EFORMAT,
                    "tokenizer_config.json: eos_token '</s>' is not in the vocabulary", NULL, NULL);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, tu_tok_setup, tu_tok_teardown);
}
