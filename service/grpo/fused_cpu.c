/* Fused GRPO loss + closed-form gradient on the CPU: one pass over each row, no temporaries.
 *
 * The same formulas as losses.py (the torch path, itself checked against autograd and the peers), written as
 * one loop per row so that a (B, T) batch is read once and the gradient written once. Rows are independent:
 * the caller splits [r0, r1) across threads (ctypes drops the GIL). Per-row partial sums go to `stats`
 * (B x NSTATS doubles) and are added up by the caller in row order, so the result does not depend on how
 * rows were split.
 *
 * Compiled at first use by fused_cpu.py with -O3 -march=native -fopenmp-simd and WITHOUT -ffast-math: NaN and
 * inf must behave exactly as in torch (a NaN log-prob gives a NaN loss, never a silent number), and the
 * `#pragma omp simd` reductions are what let gcc vectorise the float sums without reassociation flags.
 *
 * Supported (everything else stays on the torch path, see fused_cpu.supports):
 *   verl: loss_mode vanilla (clip low/high + dual clip) and gspo; any loss_agg_mode (it only changes the row
 *         weights c_pg / c_kl, computed by the caller); kl_loss_type k1/abs/k2/k3 and their "+" forms.
 *   TRL:  loss_type grpo/bnpo/dr_grpo/dapo, token or sequence importance sampling, delta, beta with or
 *         without use_bias_correction_kl.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep under a strict -std= too */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { S_LOSS, S_PPO_KL, S_CLIP, S_CLIP_LOWER, S_KL_LOSS, S_KL_SUM, S_LOW, S_HIGH, S_REGION, S_LOW_ROW, S_HIGH_ROW,
       NSTATS };
enum { FLAVOR_VERL = 0, FLAVOR_TRL = 1 };
enum { KL_K1 = 0, KL_ABS = 1, KL_K2 = 2, KL_K3 = 3 };

/* The per-row functions take the hot switches as arguments and are always inlined into `*_row` below with
 * constants, so every combination gets its own branch-free vectorised loop. */
#define HOT static inline __attribute__((always_inline))

typedef struct {
    int32_t flavor;
    int32_t gspo;           /* verl loss_mode gspo (sequence ratio, no dual clip) */
    int32_t use_kl;         /* verl use_kl_loss / TRL beta != 0 */
    int32_t kl_type;        /* verl kl_loss_type base */
    int32_t kl_plus;        /* verl "+" straight-through: value of kl_type, gradient of k2 */
    int32_t seq_level;      /* TRL importance_sampling_level == "sequence" */
    int32_t has_delta;      /* TRL delta given */
    int32_t bias_corr;      /* TRL use_bias_correction_kl */
    int32_t per_row_metric; /* TRL: sequence level with per-sequence advantages: clip metrics count rows */
    float lo, hi;           /* clip range 1 - eps_low, 1 + eps_high (fp32, as torch compares in fp32) */
    float clip_c;           /* verl clip_ratio_c */
    float delta;            /* TRL delta */
    float kl_coef;          /* verl kl_loss_coef / TRL beta */
} Params;

static inline float bits_to_float(int32_t i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

static inline int32_t float_to_bits(float f) {
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

/* exp for float, branch-free so gcc vectorises it: Cody-Waite reduction, Cephes' degree-6 polynomial (~1 ulp).
 * Overflow gives inf, NaN stays NaN; results below ~4e-38 flush to 0 (torch keeps denormals there: the
 * absolute difference is under 1e-37). */
static inline float fexp(float x) {
    float xc = x < -86.0f ? -86.0f : (x > 88.72f ? 88.72f : x);
    float k = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    float y = p * bits_to_float(((int32_t)k + 126) << 23) * 2.0f; /* 2^(k-1): k = 128 stays finite; times 2 */
    y = x > 88.7228391f ? INFINITY : y;
    y = x < -86.0f ? 0.0f : y;
    return x != x ? x : y;
}

/* exp for arguments already clamped to [-20, 20] (verl clamps every ratio and k3 exponent there), or NaN:
 * no range handling, and the rounding to k done by the 1.5 * 2^23 trick instead of floorf and a conversion.
 * NaN propagates through the polynomial. Same polynomial as fexp, same accuracy. */
static inline float fexp20(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits */
    float kf = x * 1.44269504088896341f + magic;
    int32_t ki = float_to_bits(kf) - float_to_bits(magic);
    float k = kf - magic;
    float r = x - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    return p * bits_to_float((ki + 127) << 23);
}

static inline float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* d min(a, b) the way autograd takes it: the smaller side, half of each at a tie. */
static inline float pick(int a_lt_b, int b_lt_a, float da, float db) {
    return a_lt_b ? da : (b_lt_a ? db : 0.5f * (da + db));
}

/* NaN-propagating max/min (torch.maximum), unlike fmaxf; two selects, no `||`, so loops stay vectorisable. */
static inline float nmax(float a, float b) {
    float m = a > b ? a : b;
    return a != a ? a : m;
}
static inline float nmin(float a, float b) {
    float m = a < b ? a : b;
    return a != a ? a : m;
}

/* verl kl_penalty(lp, ref, type) value and d/dlp (kl.py) */
typedef struct {
    float val, grad;
} KL;

/* verl's clipped surrogate max(-a r, -a clip(r)) and its derivative for ratio r with d r / d logp = dr. */
typedef struct {
    float c1, dc1;
    int clipped;
} Clip;

HOT Clip clip(float a, float r, float dr, float lo, float hi) {
    float l1 = -a * r;
    float l2 = -a * clampf(r, lo, hi);
    float dl1 = -a * dr;
    float dl2 = ((r >= lo) & (r <= hi)) ? dl1 : 0.0f;
    return (Clip){nmax(l1, l2), pick(l2 < l1, l1 < l2, dl1, dl2), l2 > l1};
}

HOT KL verl_kl(const int kl_type, const int kl_plus, float lp, float ref) {
    float d = lp - ref;
    float v, g;
    if (kl_type == KL_K1) {
        v = d; g = 1.0f;
    } else if (kl_type == KL_ABS) {
        v = fabsf(d); g = (float)((d > 0.0f) - (d < 0.0f));
    } else if (kl_type == KL_K2) {
        v = 0.5f * d * d; g = d;
    } else {
        float delta = -d;
        float dc = clampf(delta, -20.0f, 20.0f);
        float e = fexp20(dc);
        float k = e - dc - 1.0f;
        v = clampf(k, -10.0f, 10.0f);
        /* the clamps pass the gradient on their closed intervals (NaN: no gradient), as torch's clamp does;
         * a chain of float selects vectorises better than combining the comparisons as ints */
        g = 1.0f - e;
        g = delta >= -20.0f ? g : 0.0f;
        g = delta <= 20.0f ? g : 0.0f;
        g = k >= -10.0f ? g : 0.0f;
        g = k <= 10.0f ? g : 0.0f;
    }
    if (kl_plus) g = d;
    return (KL){v, g};
}

/* Sum of (lp - old) over valid tokens of a row (the sequence-level log-ratio numerator). */
static float row_logratio_sum(const float *lp, const float *old, const uint8_t *m, int64_t t0, int64_t t1) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t t = t0; t < t1; t++) {
        int valid = m[t] != 0;
        float l = valid ? lp[t] : 0.0f;
        float o = valid ? old[t] : 0.0f;
        s += l - o;
    }
    return s;
}

HOT void verl_row_impl(const Params *p, const float *restrict lp, const float *restrict old,
                       const float *restrict ref, const float *restrict adv, const int per_tok,
                       const uint8_t *restrict m, int64_t t0, int64_t t1, float n, float c_pg, float c_kl,
                       float *restrict g, double *st, const int gspo, const int use_kl, const int kl_type,
                       const int sign) {
    /* sign = +1 / -1: one finite advantage per row, known positive / negative; the clipped surrogate then
     * collapses to -a min(r, hi) / -a max(r, lo) (same values and gradients as the general form, about a
     * third of its operations). 0: the general form (per-token advantages, gspo, a = 0 or not finite). */
    const float lo = p->lo, hi = p->hi, clip_c = p->clip_c;
    float a_row = adv[0];
    float r_seq = 0.0f, dr_seq = 0.0f;
    float s_pg = 0.0f, s_kl = 0.0f, s_ppo = 0.0f;
    float n_clip = 0.0f, n_lower = 0.0f; /* counts as floats: exact below 2^24, and no int64 lanes */
    if (gspo) {
        float slr = row_logratio_sum(lp, old, m, t0, t1);
        float lseq = slr / (n < 1.0f ? 1.0f : n);
        r_seq = fexp(lseq > 10.0f ? 10.0f : lseq);
        dr_seq = lseq <= 10.0f ? r_seq : 0.0f;
        s_ppo = -slr;
    }
    /* gspo with one advantage per row: the clipped term is the same for the whole row (computed once; left
     * inside the loop, gcc stops vectorising it) */
    const Clip row_clip = clip(a_row, r_seq, dr_seq, lo, hi);
    const float kcoef = p->kl_coef * c_kl;
    const int kl_plus = p->kl_plus;
#pragma omp simd reduction(+ : s_pg, s_kl, s_ppo, n_clip, n_lower)
    for (int64_t t = t0; t < t1; t++) {
        int valid = m[t] != 0;
        /* masked positions are not sanitised: every output below is selected by `valid` */
        float l = lp[t];
        float o = old[t];
        float a = per_tok ? adv[t] : a_row;
        float lr = l - o;
        float r, dr;
        if (gspo) {
            r = r_seq; dr = dr_seq;
        } else {
            float lrc = clampf(lr, -20.0f, 20.0f);
            r = fexp20(lrc);
            dr = fabsf(lr) <= 20.0f ? r : 0.0f;
            s_ppo += valid ? -lrc : 0.0f;
        }
        float loss_t, g_t;
        if (sign > 0) {
            loss_t = -a * nmin(r, hi);
            g_t = r > hi ? 0.0f : -a * dr; /* NaN r: NaN gradient, as the general form gives */
            n_clip += (float)(valid & (r > hi));
        } else if (sign < 0) {
            float c1 = -a * nmax(r, lo);
            float dc1 = r < lo ? 0.0f : -a * dr;
            n_clip += (float)(valid & (r < lo));
            float l3 = -a * clip_c;
            loss_t = nmin(l3, c1);
            g_t = pick(c1 < l3, l3 < c1, dc1, 0.0f);
            n_lower += (float)(valid & (c1 > l3));
        } else {
        Clip k = gspo && !per_tok ? row_clip : clip(a, r, dr, lo, hi);
        float c1 = k.c1, dc1 = k.dc1;
        n_clip += (float)(valid & k.clipped);
        loss_t = c1, g_t = dc1;
        if (!gspo) {
            float l3 = -a * clip_c;
            int neg = a < 0.0f;
            float low = nmin(l3, c1);
            float dlow = pick(c1 < l3, l3 < c1, dc1, 0.0f);
            n_lower += (float)(valid & (c1 > l3) & neg);
            loss_t = neg ? low : c1;
            g_t = neg ? dlow : dc1;
        }
        }
        s_pg += valid ? loss_t : 0.0f;
        float gt = g_t * c_pg;
        if (use_kl) {
            float rf = ref[t];
            KL k = verl_kl(kl_type, kl_plus, l, rf);
            s_kl += valid ? k.val : 0.0f;
            gt += kcoef * k.grad;
        }
        g[t] = valid ? gt : 0.0f;
    }
    st[S_LOSS] = (double)s_pg * c_pg;
    st[S_PPO_KL] = s_ppo;
    st[S_CLIP] = (double)n_clip;
    st[S_CLIP_LOWER] = (double)n_lower;
    st[S_KL_LOSS] = (double)s_kl * c_kl;
    st[S_KL_SUM] = s_kl;
}

HOT void trl_row_impl(const Params *p, const float *restrict lp, const float *restrict old,
                      const float *restrict ref, const float *restrict adv, const int per_tok,
                      const uint8_t *restrict m, int64_t t0, int64_t t1, float n, float c, float *restrict g,
                      double *st, const int seq, const int use_kl, const int has_delta, const int bias_corr,
                      const int sign) {
    /* sign = +1 / -1 (token level, no delta, one finite advantage per row of known sign): min(q a, clip(q) a)
     * is a min(q, hi) / a max(q, lo); same values and gradients as the general form, fewer operations */
    const float lo = p->lo, hi = p->hi, beta = p->kl_coef, delta = p->delta;
    float a_row = adv[0];
    float q_seq = 0.0f;
    float nn = n < 1.0f ? 1.0f : n;
    if (seq) q_seq = fexp(row_logratio_sum(lp, old, m, t0, t1) / nn);
    float s_loss = 0.0f, s_kl = 0.0f, s_gq = 0.0f;
    float n_low = 0.0f, n_high = 0.0f, n_region = 0.0f;
#pragma omp simd reduction(+ : s_loss, s_kl, s_gq, n_low, n_high, n_region)
    for (int64_t t = t0; t < t1; t++) {
        int valid = m[t] != 0;
        /* masked positions are not sanitised: every output below is selected by `valid` */
        float l = lp[t];
        float o = old[t];
        float a = per_tok ? adv[t] : a_row;
        float q = seq ? q_seq : fexp(l - o);
        float ptl, gq;
        int low, high;
        if (sign > 0) {
            ptl = -(a * nmin(q, hi));
            gq = q > hi ? 0.0f : -a;
            low = 0;
            high = q > hi;
        } else if (sign < 0) {
            ptl = -(a * nmax(q, lo));
            gq = q < lo ? 0.0f : -a;
            low = q < lo;
            high = 0;
        } else {
            float q2 = clampf(q, lo, hi);
            float inr = ((q >= lo) & (q <= hi)) ? 1.0f : 0.0f;
            float q1 = q, pass1 = 1.0f;
            if (has_delta) {
                q1 = q > delta ? delta : q;
                pass1 = q <= delta ? 1.0f : 0.0f;
            }
            float p1 = q1 * a, p2 = q2 * a;
            ptl = -nmin(p1, p2);
            gq = -a * pick(p1 < p2, p2 < p1, pass1, inr);
            low = (q < lo) & (a < 0.0f);
            high = (q > hi) & (a > 0.0f);
        }
        float glp = 0.0f;
        n_low += (float)(valid & low);
        n_high += (float)(valid & high);
        n_region += (float)(valid & (low | high));
        if (use_kl) {
            float rf = ref[t];
            float x = rf - l;
            float e = fexp(x);
            float kv = e - x - 1.0f, kg = 1.0f - e;
            float kl = kv;
            if (bias_corr) {
                kl = kv * q;
                gq = gq + beta * kv;
                glp = glp + beta * kg * q;
            } else {
                glp = glp + beta * kg;
            }
            ptl = ptl + beta * kl;
            s_kl += valid ? kl : 0.0f;
        }
        s_loss += valid ? ptl : 0.0f;
        s_gq += valid ? gq : 0.0f;
        g[t] = valid ? (seq ? c * glp : c * (gq * q + glp)) : 0.0f;
    }
    if (seq) {
        /* the sequence ratio couples a row: d q / d logp_t = q / n for every valid t */
        float add = s_gq * c * q_seq / nn;
#pragma omp simd
        for (int64_t t = t0; t < t1; t++) g[t] += m[t] != 0 ? add : 0.0f;
    }
    st[S_LOSS] = (double)s_loss * c;
    st[S_KL_SUM] = s_kl;
    if (p->per_row_metric) {
        int low = (q_seq < lo) & (a_row < 0.0f);
        int high = (q_seq > hi) & (a_row > 0.0f);
        st[S_LOW] = low;
        st[S_HIGH] = high;
        st[S_REGION] = low | high;
        st[S_LOW_ROW] = low;
        st[S_HIGH_ROW] = high;
    } else {
        st[S_LOW] = (double)n_low;
        st[S_HIGH] = (double)n_high;
        st[S_REGION] = (double)n_region;
        st[S_LOW_ROW] = (double)((float)n_low / n); /* 0/0 = NaN for an empty row, as torch gives */
        st[S_HIGH_ROW] = (double)((float)n_high / n);
    }
}

/* +1 / -1 for a finite advantage of that sign (the collapsed clipped forms apply), 0 for 0, inf and NaN. */
static int advantage_sign(float a) {
    if (a > 0.0f && a < INFINITY) return 1;
    if (a < 0.0f && a > -INFINITY) return -1;
    return 0;
}

static void verl_row(const Params *p, const float *lp, const float *old, const float *ref, const float *adv,
                     int64_t adv_cols, const uint8_t *m, int64_t t0, int64_t t1, float n, float c_pg, float c_kl,
                     float *g, double *st) {
#define VERL(PT, GS, KL, KT, SG) \
    verl_row_impl(p, lp, old, ref, adv, PT, m, t0, t1, n, c_pg, c_kl, g, st, GS, KL, KT, SG)
#define VERL_KL(PT, GS, SG)                                          \
    do {                                                              \
        if (!p->use_kl) VERL(PT, GS, 0, 0, SG);                       \
        else if (p->kl_type == KL_K1) VERL(PT, GS, 1, KL_K1, SG);     \
        else if (p->kl_type == KL_ABS) VERL(PT, GS, 1, KL_ABS, SG);   \
        else if (p->kl_type == KL_K2) VERL(PT, GS, 1, KL_K2, SG);     \
        else VERL(PT, GS, 1, KL_K3, SG);                              \
    } while (0)
    const int pt = adv_cols != 1;
    if (pt) {
        if (p->gspo) VERL_KL(1, 1, 0); else VERL_KL(1, 0, 0);
    } else if (p->gspo) {
        VERL_KL(0, 1, 0);
    } else {
        const int sg = advantage_sign(adv[0]);
        if (sg > 0) VERL_KL(0, 0, 1); else if (sg < 0) VERL_KL(0, 0, -1); else VERL_KL(0, 0, 0);
    }
#undef VERL_KL
#undef VERL
}

static void trl_row(const Params *p, const float *lp, const float *old, const float *ref, const float *adv,
                    int64_t adv_cols, const uint8_t *m, int64_t t0, int64_t t1, float n, float c, float *g,
                    double *st) {
#define TRL(PT, SQ, KL, DL, BC, SG) \
    trl_row_impl(p, lp, old, ref, adv, PT, m, t0, t1, n, c, g, st, SQ, KL, DL, BC, SG)
#define TRL_KL(PT, SQ, SG)                                                            \
    do {                                                                               \
        if (p->kl_coef == 0.0f) {                                                      \
            if (p->has_delta) TRL(PT, SQ, 0, 1, 0, 0); else TRL(PT, SQ, 0, 0, 0, SG);  \
        } else if (p->bias_corr) {                                                     \
            if (p->has_delta) TRL(PT, SQ, 1, 1, 1, 0); else TRL(PT, SQ, 1, 0, 1, SG);  \
        } else {                                                                       \
            if (p->has_delta) TRL(PT, SQ, 1, 1, 0, 0); else TRL(PT, SQ, 1, 0, 0, SG);  \
        }                                                                              \
    } while (0)
    const int pt = adv_cols != 1;
    if (pt) {
        if (p->seq_level) TRL_KL(1, 1, 0); else TRL_KL(1, 0, 0);
    } else if (p->seq_level) {
        TRL_KL(0, 1, 0);
    } else {
        const int sg = advantage_sign(adv[0]);
        if (sg > 0) TRL_KL(0, 0, 1); else if (sg < 0) TRL_KL(0, 0, -1); else TRL_KL(0, 0, 0);
    }
#undef TRL_KL
#undef TRL
}

/* Valid-token count and the span [first, last] of valid positions of each row (first = T, last = -1 if none). */
static inline uint64_t load_u64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8); /* unaligned: a row starts anywhere */
    return w;
}

/* Per row: valid tokens, first and last valid position (T and -1 for an empty row). A mask byte is valid when
 * nonzero (bool, or uint8 of any value). The whole row is counted first, front to back in one vectorised pass:
 * a cold mask then streams from memory as the prefetchers expect (skipping the zero head and tail first, from
 * both ends, took twice as long cold: three short streams a row, one of them backwards). The zero head and
 * tail are then found a word at a time in the row just read, from L1. */
void referee_row_info(const uint8_t *mask, int64_t B, int64_t T, int64_t *n, int64_t *first, int64_t *last) {
    const int64_t block = (int64_t)1 << 30; /* an int32 count per block: vectorises with 32-bit lanes */
    for (int64_t i = 0; i < B; i++) {
        const uint8_t *m = mask + i * T;
        int64_t cnt = 0;
        for (int64_t b0 = 0; b0 < T; b0 += block) {
            const int64_t b1 = T - b0 < block ? T : b0 + block;
            int32_t c = 0;
#pragma omp simd reduction(+ : c)
            for (int64_t t = b0; t < b1; t++) c += m[t] != 0;
            cnt += c;
        }
        if (cnt == 0) {
            n[i] = 0; first[i] = T; last[i] = -1;
            continue;
        }
        int64_t f = 0;
        while (f + 8 <= T && load_u64(m + f) == 0) f += 8;
        while (m[f] == 0) f++;
        int64_t l = T - 1;
        while (l - 7 > f && load_u64(m + l - 7) == 0) l -= 8;
        while (m[l] == 0) l--; /* stops at f at the latest: m[f] != 0 */
        n[i] = cnt; first[i] = f; last[i] = l;
    }
}

/* Loss rows [r0, r1): gradient rows of `grad` (B x T) and per-row partial sums `stats` (B x NSTATS).
 * `old` may be NULL (on-policy: old = lp); `ref` may be NULL when no KL term is used; `adv` is B x adv_cols
 * (1 = per sequence, T = per token). Only the valid span of each row is computed; the rest is zero-filled. */
void referee_fused_rows(const Params *p, int64_t r0, int64_t r1, int64_t T, const float *lp, const float *old,
                        const float *ref, const float *adv, int64_t adv_cols, const uint8_t *mask, const int64_t *n,
                        const int64_t *first, const int64_t *last, const float *c_pg, const float *c_kl, float *grad,
                        double *stats) {
    for (int64_t i = r0; i < r1; i++) {
        const int64_t off = i * T;
        if (i + 1 < r1 && last[i + 1] >= first[i + 1]) {
            /* the next row's span starts where the hardware prefetcher has no stream yet: ask for its head */
            const int64_t nx = off + T + first[i + 1];
            for (int k = 0; k < 256; k += 16) {
                __builtin_prefetch(lp + nx + k);
                if (old) __builtin_prefetch(old + nx + k);
                if (ref) __builtin_prefetch(ref + nx + k);
            }
            __builtin_prefetch(mask + nx);
            __builtin_prefetch(mask + nx + 64);
            __builtin_prefetch(mask + nx + 128);
            __builtin_prefetch(mask + nx + 192);
        }
        int64_t t0 = first[i], t1 = last[i] + 1;
        if (t1 <= t0) t0 = t1 = 0;
        float *g = grad + off;
        if (t0 > 0) memset(g, 0, (size_t)t0 * sizeof(float));
        if (t1 < T) memset(g + t1, 0, (size_t)(T - t1) * sizeof(float));
        const float *o = old ? old + off : lp + off;
        const float *rf = ref ? ref + off : lp + off;
        const float *a = adv + i * adv_cols;
        double *st = stats + i * NSTATS;
        memset(st, 0, NSTATS * sizeof(double));
        /* pointers are shifted so that index t addresses column t whatever the span */
        if (p->flavor == FLAVOR_VERL)
            verl_row(p, lp + off, o, rf, a, adv_cols, mask + off, t0, t1, (float)n[i], c_pg[i], c_kl[i], g, st);
        else
            trl_row(p, lp + off, o, rf, a, adv_cols, mask + off, t0, t1, (float)n[i], c_pg[i], g, st);
    }
}

int referee_nstats(void) { return NSTATS; }

/* ---------------------------------------------------------------------------------------------------------
 * One call on several threads (fused_cpu.FusedRun). A call has two phases, the mask scan (row counts and
 * spans) and the loss rows; between them the caller, in Python, turns the counts into row weights. The
 * caller's thread and N pool threads (each running referee_call_work) take chunks of rows from one shared
 * counter per phase, so:
 *   - a pool thread that wakes late (waking an idle vCPU costs 50-200 us on a VM) simply takes fewer chunks:
 *     the caller never waits for a thread to start, only for the chunks a thread has taken to finish;
 *   - a pool thread that finishes its scan chunks waits for the rows phase spinning, then sleeping, instead
 *     of going back to the pool and being woken again (one hand-off a call instead of two);
 *   - a vCPU the hypervisor takes away mid-call leaves its untaken chunks to the others.
 * Each row's sums are written to its own slot of `stats` and added up by the caller in row order, so the
 * results do not depend on which thread took which row. A pool thread that has waited too long for the rows
 * phase (the caller held up, or aborted) leaves; the caller does whatever is left. The struct is freed by
 * whoever drops the last reference (the caller and each pool thread hold one). */

enum { PHASE_SCAN = 0, PHASE_ROWS = 1, PHASE_ABORT = 2 };
enum { SCAN_CHUNK_MAX = 16, ROWS_CHUNK_MAX = 4 };
#define WAIT_SPIN_NS 300000LL    /* a pool thread spins this long for the rows phase, then sleeps in steps */
#define WAIT_GIVE_UP_NS 20000000LL

/* One phase's work: rows [0, B) taken `chunk` at a time from `next`; `done` counts the rows finished. */
typedef struct {
    _Atomic int64_t next, done;
    int64_t chunk;
} Phase;

typedef struct {
    /* scan */
    const uint8_t *mask;
    int64_t B, T;
    int64_t *n, *first, *last;
    /* rows: set by referee_call_rows before the phase opens */
    const Params *p;
    const float *lp, *old, *ref, *adv, *c_pg, *c_kl;
    int64_t adv_cols;
    float *grad;
    double *stats;
    Phase scan, rows;
    _Atomic int32_t phase;
    _Atomic int32_t refs;
} Call;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One step of a wait for another thread of the call. The yield matters: the thread waited for may have been
 * woken onto this very CPU (the scheduler likes to put a wakee beside its waker), and a pure spin would keep it
 * off the CPU until the next tick. Where nothing else is runnable here the yield returns at once. */
static inline void wait_step(void) {
    for (int k = 0; k < 32; k++) cpu_relax();
    sched_yield();
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void call_release(Call *c) {
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) free(c);
}

static void scan_rows(Call *c, int64_t r0, int64_t r1) {
    referee_row_info(c->mask + r0 * c->T, r1 - r0, c->T, c->n + r0, c->first + r0, c->last + r0);
}

/* (the rows phase is open: its arguments are visible) */
static void loss_rows(Call *c, int64_t r0, int64_t r1) {
    referee_fused_rows(c->p, r0, r1, c->T, c->lp, c->old, c->ref, c->adv, c->adv_cols, c->mask, c->n, c->first,
                       c->last, c->c_pg, c->c_kl, c->grad, c->stats);
}

/* Chunks of a phase until none is left to take. */
static void take_chunks(Call *c, Phase *ph, void (*work)(Call *, int64_t, int64_t)) {
    for (;;) {
        int64_t r0 = atomic_fetch_add_explicit(&ph->next, ph->chunk, memory_order_relaxed);
        if (r0 >= c->B) return;
        int64_t r1 = r0 + ph->chunk < c->B ? r0 + ph->chunk : c->B;
        work(c, r0, r1);
        atomic_fetch_add_explicit(&ph->done, r1 - r0, memory_order_release);
    }
}

/* Until every chunk of a phase taken by any thread is done. */
static void wait_done(const Call *c, Phase *ph) {
    while (atomic_load_explicit(&ph->done, memory_order_acquire) < c->B) wait_step();
}

/* A new call over `mask` (B x T) writing counts and spans into n, first, last; `workers` pool threads will
 * join it (each must run referee_call_work exactly once). */
Call *referee_call_new(const uint8_t *mask, int64_t B, int64_t T, int64_t *n, int64_t *first, int64_t *last,
                       int32_t workers) {
    Call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->mask = mask; c->B = B; c->T = T; c->n = n; c->first = first; c->last = last;
    /* at least ~16 chunks a thread, so that ragged rows and a late thread even out; fewer rows a chunk for a
     * batch of few long rows */
    const int64_t per = B / (16 * (int64_t)(workers + 1));
    c->scan.chunk = per < 1 ? 1 : (per > SCAN_CHUNK_MAX ? SCAN_CHUNK_MAX : per);
    c->rows.chunk = per < 1 ? 1 : (per > ROWS_CHUNK_MAX ? ROWS_CHUNK_MAX : per);
    atomic_init(&c->phase, PHASE_SCAN);
    atomic_init(&c->refs, 1 + workers);
    return c;
}

/* A pool thread's part: scan chunks, wait for the rows phase (or give up), row chunks, drop its reference. */
void referee_call_work(Call *c) {
    take_chunks(c, &c->scan, scan_rows);
    int64_t start = now_ns();
    int32_t ph;
    while ((ph = atomic_load_explicit(&c->phase, memory_order_acquire)) == PHASE_SCAN) {
        int64_t waited = now_ns() - start;
        if (waited > WAIT_GIVE_UP_NS) break;
        if (waited < WAIT_SPIN_NS) {
            wait_step();
        } else {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    if (ph == PHASE_ROWS) take_chunks(c, &c->rows, loss_rows);
    call_release(c);
}

/* The caller's scan: its own chunks, then until every taken chunk is done. */
void referee_call_scan(Call *c) {
    take_chunks(c, &c->scan, scan_rows);
    wait_done(c, &c->scan);
}

/* The caller's rows: publish the arguments, open the phase, do chunks, wait for every taken chunk, and drop
 * the caller's reference (the call is over for the caller; do not use `c` after this). */
void referee_call_rows(Call *c, const Params *p, const float *lp, const float *old, const float *ref,
                       const float *adv, int64_t adv_cols, const float *c_pg, const float *c_kl, float *grad,
                       double *stats) {
    c->p = p; c->lp = lp; c->old = old; c->ref = ref; c->adv = adv; c->adv_cols = adv_cols;
    c->c_pg = c_pg; c->c_kl = c_kl; c->grad = grad; c->stats = stats;
    atomic_store_explicit(&c->phase, PHASE_ROWS, memory_order_release);
    take_chunks(c, &c->rows, loss_rows);
    wait_done(c, &c->rows);
    call_release(c);
}

/* The caller gives up after the scan (an error computing the weights): pool threads still waiting leave. */
void referee_call_abort(Call *c) {
    atomic_store_explicit(&c->phase, PHASE_ABORT, memory_order_release);
    call_release(c);
}
