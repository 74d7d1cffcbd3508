#include "data/packer.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int packer_init(packer *p, dataset_writer *w, dataset_split split, int seq_len, bool pack, int eos_id) {
    memset(p, 0, sizeof *p);
    p->w = w;
    p->split = split;
    p->seq_len = seq_len;
    p->pack = pack;
    p->eos_id = eos_id;
    p->ids = malloc((size_t)seq_len * sizeof *p->ids);
    p->mask = malloc((size_t)seq_len);
    if (!p->ids || !p->mask) {
        packer_free(p);
        return err_set(PEFT_ENOMEM, "out of memory");
    }
    return PEFT_OK;
}

void packer_free(packer *p) {
    free(p->ids);
    free(p->mask);
    p->ids = NULL;
    p->mask = NULL;
}

static int push_token(packer *p, int32_t id, uint8_t m) {
    p->ids[p->fill] = id;
    p->mask[p->fill] = m;
    if (++p->fill < p->seq_len) return PEFT_OK;
    p->fill = 0;
    return dataset_writer_add(p->w, p->split, p->ids, p->mask, p->seq_len);
}

int packer_add(packer *p, const int32_t *ids, const uint8_t *mask, int n) {
    if (n <= 0) return PEFT_OK;
    p->documents++;
    dataset_writer_count_documents(p->w, p->split, 1);
    const uint8_t eos_mask = mask[n - 1];
    if (p->pack) {
        for (int i = 0; i < n; i++) PEFT_TRY(push_token(p, ids[i], mask[i]));
        if (p->eos_id >= 0) PEFT_TRY(push_token(p, p->eos_id, eos_mask));
        return PEFT_OK;
    }
    int total = n + (p->eos_id >= 0);
    int keep = total <= p->seq_len ? total : p->seq_len;
    if (total > p->seq_len) {
        p->truncated++;
        p->dropped_tokens += (uint64_t)(total - p->seq_len);
    }
    int from_doc = keep < n ? keep : n;
    memcpy(p->ids, ids, (size_t)from_doc * sizeof *ids);
    memcpy(p->mask, mask, (size_t)from_doc);
    if (keep > n) {
        p->ids[n] = p->eos_id;
        p->mask[n] = eos_mask;
    }
    return dataset_writer_add(p->w, p->split, p->ids, p->mask, keep);
}

int packer_flush(packer *p) {
    if (!p->pack || p->fill == 0) return PEFT_OK;
    int n = p->fill;
    p->fill = 0;
    return dataset_writer_add(p->w, p->split, p->ids, p->mask, n);
}
