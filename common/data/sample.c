/* sample.c - the global data order: a seeded, memory-free permutation per epoch (dataset.h). */
#include "data/dataset.h"

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A balanced Feistel network over [0, 2^(2*half_bits)): a bijection for any key. */
static uint64_t feistel(uint64_t x, int half_bits, uint64_t key) {
    const uint64_t mask = (1ull << half_bits) - 1;
    uint64_t l = x >> half_bits, r = x & mask;
    for (int round = 0; round < 4; round++) {
        uint64_t f = mix64(r ^ key ^ (0x9e3779b97f4a7c15ull * (uint64_t)(round + 1))) & mask;
        uint64_t t = l ^ f;
        l = r;
        r = t;
    }
    return (l << half_bits) | r;
}

uint64_t dataset_sample(uint64_t seed, uint64_t n, uint64_t g) {
    if (n <= 1) return 0;
    const uint64_t epoch = g / n, pos = g % n;
    int half_bits = 1;
    while (half_bits < 31 && (1ull << (2 * half_bits)) < n) half_bits++;
    const uint64_t key = mix64(seed * 0x2545f4914f6cdd1dull + epoch + 1);
    /* cycle walking: stay inside [0, n); the domain is < 4n, so a few steps on average */
    uint64_t x = feistel(pos, half_bits, key);
    while (x >= n) x = feistel(x, half_bits, key);
    return x;
}
