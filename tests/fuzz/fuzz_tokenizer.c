/*
 * fuzz_tokenizer.c - libFuzzer target for tokenizer.json (common/tokenizer/).
 *
 * Input: the text of a tokenizer.json. tokenizer_load_memory() runs the whole loader (model,
 * added tokens, normalizer, pre-tokenizer, post-processor, decoder, the tables built after them);
 * a tokenizer that loads then encodes and decodes a fixed text, and every id it produces must be
 * inside the vocabulary.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static const char sample[] = "Hello world! It's 2024:  caf\xc3\xa9 \xe2\x96\x81x <s></s><|endoftext|>\n\t 12345";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tokenizer *tk;
    if (tokenizer_load_memory("tokenizer.json", (const char *)data, size, &tk)) return 0;
    int vocab = tokenizer_vocab_size(tk);
    if (vocab <= 0 || strlen(tokenizer_fingerprint(tk)) != 16) abort();
    tok_ids ids = {0};
    if (tokenizer_encode(tk, sample, sizeof sample - 1, true, &ids) == 0) {
        for (size_t i = 0; i < ids.n; i++)
            if (ids.v[i] < 0 || ids.v[i] >= vocab) abort();
        char *text = NULL;
        if (tokenizer_decode(tk, ids.v, ids.n, false, &text, NULL) == 0) free(text);
    }
    free(ids.v);
    tokenizer_free(tk);
    return 0;
}
