/*
 * fuzz_tokenize.c - libFuzzer target for encoding hostile text (common/tokenizer/): what
 * `peft prep` and `peft tokenize` do with every line a user hands them.
 *
 * Input: byte 0 picks one of the fixture tokenizers (GPT-2 byte-level BPE, a Llama 3-style and a
 * SentencePiece-style one with byte fallback and <unk>), the rest is the text. Encoding must
 * accept exactly the valid UTF-8 inputs, every id must be in the vocabulary, and for the
 * byte-level GPT-2 tokenizer decoding must give the text back byte for byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

static const char *const styles[] = {"gpt2", "llama3_style", "metaspace_unk_style"};
#define NSTYLES (sizeof styles / sizeof *styles)
static tokenizer *tks[NSTYLES];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *fix = getenv("PEFT_FIXTURES");
    for (size_t i = 0; i < NSTYLES; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer.json", fix ? fix : PEFT_FIXTURES_DIR, styles[i]);
        if (tokenizer_load(path, &tks[i])) {
            fprintf(stderr, "fuzz_tokenize: cannot load %s (set PEFT_FIXTURES)\n", path);
            abort();
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t which = data[0] % NSTYLES;
    const tokenizer *tk = tks[which];
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    tok_ids ids = {0};
    int rc = tokenizer_encode(tk, text, n, true, &ids);
    if ((rc == 0) != (st_utf8_valid_len(text, n) == n)) abort(); /* fails exactly on invalid UTF-8 */
    if (rc) return 0;
    int vocab = tokenizer_vocab_size(tk);
    for (size_t i = 0; i < ids.n; i++)
        if (ids.v[i] < 0 || ids.v[i] >= vocab) abort();
    char *back = NULL;
    size_t len = 0;
    if (tokenizer_decode(tk, ids.v, ids.n, false, &back, &len)) abort(); /* our own ids always decode */
    if (which == 0 && (len != n || memcmp(back, text, n))) abort();   /* byte-level BPE is lossless */
    free(back);
    free(ids.v);
    return 0;
}
