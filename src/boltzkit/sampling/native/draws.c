/* Fused Bernoulli draws for boltzkit (see boltzkit/sampling/logistic.py, which computes the
 * same numbers with torch operations; the two must agree bit for bit).
 *
 * Random words: SplitMix64 (Steele, Lea & Flood 2014) started at state `key`, advanced
 * `first` steps: word_i = mix(key + (first + i + 1)·γ), all arithmetic mod 2^64.  Each word
 * holds four 16-bit levels u (least significant first).  A draw is x = 1 iff
 * table[u] < a, with table[u] = float32(logit((u + ½) / 2^16)) and a the (scaled) field, so
 * P(x = 1) = #{u : table[u] < a} / 2^16 = round(2^16 σ(a)) / 2^16 up to float32 rounding of
 * the table.  Built with -ffp-contract=off and no fast-math: a float32 product as torch computes
 * it, and a comparison that is exact. */
#include <stdint.h>
#include <string.h>

#define GAMMA 0x9E3779B97F4A7C15ULL
#define BLOCK 1024

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void boltzkit_words(uint64_t key, int64_t first, int64_t n, uint64_t *words) {
    uint64_t state = key + (uint64_t)first * GAMMA;
    for (int64_t i = 0; i < n; i++)
        words[i] = mix(state + (uint64_t)(i + 1) * GAMMA);
}

/* An int32 with the order of the float32 f, for f not NaN: t < v exactly when
 * ordered(t) < ordered(v).  (−0 and +0 map to −1 and 0; no table entry lies between them.) */
static inline int32_t ordered(float f) {
    int32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits ^ ((bits >> 31) & 0x7FFFFFFF);
}

/* 0 for NaN, which is below nothing (as a float comparison with NaN is false). */
static inline int32_t is_number(float f) {
    int32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return (bits & 0x7FFFFFFF) <= 0x7F800000;
}

/* out[i] = table[u_i] < beta · field[i] (or field[i] when scaled == 0), as 1.0f / 0.0f, in integer
 * comparisons (a coin flip is the worst case for a branch, and compilers make a float comparison
 * into one). */
void boltzkit_draw_logistic(const float *field, float *out, int64_t n, float beta, int scaled,
                            const uint64_t *key_word, const float *table) {
    uint64_t key = *key_word;  /* read here, not by the caller: no value leaves the tensor that holds it */
    uint64_t words[BLOCK / 4];
    uint16_t level[BLOCK];
    int32_t limit[BLOCK];
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t m = n - start < BLOCK ? n - start : BLOCK;
        boltzkit_words(key, start / 4, (m + 3) / 4, words);
        memcpy(level, words, sizeof level);  /* level i = bits 16·(i mod 4) … of word i / 4 (little-endian) */
        const float *a = field + start;
        float *x = out + start;
        for (int64_t i = 0; i < m; i++)
            limit[i] = ordered(table[level[i]]);
        if (scaled) {
            for (int64_t i = 0; i < m; i++) {
                float v = beta * a[i];
                x[i] = (float)((limit[i] < ordered(v)) & is_number(v));
            }
        } else {
            for (int64_t i = 0; i < m; i++)
                x[i] = (float)((limit[i] < ordered(a[i])) & is_number(a[i]));
        }
    }
}
