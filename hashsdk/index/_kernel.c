/* hashsdk._kernel: exact Hamming search over bit-packed codes.
 *
 * Codes are rows of `cs` bytes (cs = ceil(bits / 8)), packed MSB-first with zero pad bits, so
 * the Hamming distance of two rows is the popcount of their XOR, taken 64 bits at a time.
 *
 * The file reads top to bottom: sinks; the one scan loop (hk_scan, an inline function that
 * macros instantiate for codes of 1 to 8, 12, 16, 24, 32 and 64 bytes plus a catch-all, in a
 * generic and a popcnt build); the AVX-512 transposed scan; run-time dispatch; tasks and the
 * thread pool; the Python entry points.
 * Three entry points share the scan loop and differ only in the per-query sink that receives
 * distances:
 *   knn(...)          top-k by counting: distances are integers in [0, bits], so a histogram
 *                     gives the k-th smallest distance exactly, with no heap;
 *   range_search(...) every code within a radius;
 *   distances(...)    the full (nq, n) distance matrix, for evaluation.
 * Results are ordered by (distance, row), where rows are positions in the database; the Python
 * index keeps rows sorted by id, so this is the (distance, id) order that evaluation relies on.
 *
 * Work is split into tasks (a tile of queries x a chunk of the database) that worker threads
 * take from an atomic counter.  The GIL is released for the whole search.  The database is
 * walked in blocks that fit L1, and each block is reused by every query of the tile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <pthread.h>
#define HK_THREADS 1
#else
#define HK_THREADS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define HK_INLINE static inline __attribute__((always_inline))
#define HK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define hk_popcount(x) __builtin_popcountll(x)
#else
#define HK_INLINE static __forceinline
#define HK_UNLIKELY(x) (x)
#include <intrin.h>
#define hk_popcount(x) ((int32_t)__popcnt64(x))
#endif

#define HK_MAX_BITS 4096
#define HK_MAX_WORDS (HK_MAX_BITS / 64)
#define HK_TILE_QUERIES 32          /* queries that share one pass over a database block */
#define HK_BLOCK_BYTES (16 * 1024)  /* database bytes per block: half of a typical L1d */
#define HK_MIN_CHUNK 4096           /* fewest codes worth giving a thread of their own */
#define HK_SCRATCH_BYTES (64u << 20) /* per-thread cap on top-k buffers */
#define HK_VECTOR_MIN_QUERIES 4     /* fewer queries than this don't repay a transposition */

HK_INLINE uint64_t hk_load8(const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* Loads t < 8 bytes; t is a constant in the specialised scans, so each case is one or two
 * plain loads.  Byte order does not matter: query and code are loaded the same way. */
HK_INLINE uint64_t hk_load_tail(const uint8_t *p, size_t t)
{
    uint64_t x = 0;
    switch (t) {
    case 1: memcpy(&x, p, 1); break;
    case 2: memcpy(&x, p, 2); break;
    case 3: memcpy(&x, p, 3); break;
    case 4: memcpy(&x, p, 4); break;
    case 5: memcpy(&x, p, 5); break;
    case 6: memcpy(&x, p, 6); break;
    case 7: memcpy(&x, p, 7); break;
    default: break;
    }
    return x;
}

/* ------------------------------------------------------------------------------------------ */
/* Sinks: what happens to a distance below the query's threshold tau.                          */

typedef struct Sink Sink;
struct Sink {
    int32_t tau; /* the scan hands over d only when d < tau */
    void (*accept)(Sink *, int32_t, int64_t);
    int64_t k;       /* knn: results wanted */
    int64_t n_below; /* knn: buffered items with d < tau; always < k */
    int64_t nbuf, cap;
    int32_t *hist; /* knn: count of accepted items per distance */
    int32_t *bd;   /* buffered distances */
    int64_t *bp;   /* buffered rows, ascending because the scan is */
    uint16_t *row; /* distances: the output row */
    int failed;    /* range: allocation failed */
};

/* knn keeps tau = the smallest d whose count of accepted items with distance <= d reaches k.
 * A later row at distance >= tau can never enter the top k: it would tie or lose on distance
 * and lose on row.  So the buffer holds every candidate, and tau only shrinks. */
static void knn_compact(Sink *s)
{
    int64_t keep_at_tau = s->k - s->n_below, m = 0;
    for (int64_t i = 0; i < s->nbuf; i++) {
        const int32_t d = s->bd[i];
        if (d < s->tau || (d == s->tau && keep_at_tau-- > 0)) {
            s->bd[m] = d;
            s->bp[m] = s->bp[i];
            m++;
        }
    }
    s->nbuf = m;
}

static void knn_accept(Sink *s, int32_t d, int64_t pos)
{
    if (s->nbuf == s->cap) knn_compact(s);
    s->bd[s->nbuf] = d;
    s->bp[s->nbuf] = pos;
    s->nbuf++;
    s->hist[d]++;
    s->n_below++;
    while (s->n_below >= s->k) {
        s->tau--;
        s->n_below -= s->hist[s->tau];
    }
}

static void range_accept(Sink *s, int32_t d, int64_t pos)
{
    if (s->nbuf == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 256;
        int32_t *bd = realloc(s->bd, (size_t)cap * sizeof(int32_t));
        if (bd) s->bd = bd;
        int64_t *bp = realloc(s->bp, (size_t)cap * sizeof(int64_t));
        if (bp) s->bp = bp;
        if (!bd || !bp) {
            s->failed = 1;
            s->tau = 0; /* stop accepting; the caller raises MemoryError */
            return;
        }
        s->cap = cap;
    }
    s->bd[s->nbuf] = d;
    s->bp[s->nbuf] = pos;
    s->nbuf++;
}

static void dist_accept(Sink *s, int32_t d, int64_t pos) { s->row[pos] = (uint16_t)d; }

/* ------------------------------------------------------------------------------------------ */
/* Reading a code as 64-bit words.  Word w < cs / 8 is a plain 8-byte load.  The tail word (when
 * cs % 8 != 0) holds the last t = cs % 8 bytes in its low bytes.  Where 8 bytes ending at the
 * code's end lie inside the database ("overlap"), the tail is one load and a shift; only the
 * first rows of a database of codes shorter than 8 bytes need the byte-wise load.           */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HK_LITTLE_ENDIAN 1
#else
#define HK_LITTLE_ENDIAN 0
#endif

HK_INLINE uint64_t hk_tail_word(const uint8_t *code, size_t cs, size_t tail, int overlap)
{
#if HK_LITTLE_ENDIAN
    if (overlap) return hk_load8(code + cs - 8) >> (8 * (8 - tail));
#endif
    (void)overlap;
    return hk_load_tail(code + cs - tail, tail);
}

/* The first row whose tail may be read with an overlapping load. */
static int64_t hk_first_overlap_row(size_t cs)
{
    if (!HK_LITTLE_ENDIAN) return INT64_MAX;
    return cs >= 8 ? 0 : (int64_t)((8 + cs - 1) / cs) - 1;
}

/* ------------------------------------------------------------------------------------------ */
/* The one scan loop.  It computes d = popcount(q XOR c) for each (query, code) and hands every
 * d < sink->tau to sink->accept.  For top-k that branch is rarely taken once tau has shrunk, so
 * the hot path is load, xor, popcnt, compare.
 *
 * Why specialise: hk_scan is always inlined into small wrappers with a constant code size, so
 * gcc unrolls the word loop, keeps query words in registers and makes the tail one load.  Why
 * several queries per pass (qb = 4): each database code is loaded once for four queries, and
 * short codes are load-bound.  The wrappers are compiled for any CPU and again with the
 * hardware popcnt instruction, chosen at run time where the CPU has it. */

HK_INLINE void hk_scan(const uint8_t *const *qp, const uint8_t *db, int64_t j0, int64_t j1,
                       const size_t cs, const int qb, const int overlap, uint64_t *qw,
                       Sink *const *sinks)
{
    const size_t nfull = cs / 8, tail = cs % 8, nw = (cs + 7) / 8;
    int32_t tau[4];
    for (int qi = 0; qi < qb; qi++) {
        for (size_t w = 0; w < nfull; w++) qw[qi * nw + w] = hk_load8(qp[qi] + 8 * w);
        if (tail) qw[qi * nw + nfull] = hk_tail_word(qp[qi], cs, tail, 0);
        tau[qi] = sinks[qi]->tau;
    }
    const uint8_t *c = db + (size_t)j0 * cs;
    for (int64_t j = j0; j < j1; j++, c += cs) {
        int32_t d[4] = {0, 0, 0, 0};
        for (size_t w = 0; w < nfull; w++) {
            const uint64_t x = hk_load8(c + 8 * w);
            for (int qi = 0; qi < qb; qi++) d[qi] += hk_popcount(x ^ qw[qi * nw + w]);
        }
        if (tail) {
            const uint64_t x = hk_tail_word(c, cs, tail, overlap);
            for (int qi = 0; qi < qb; qi++) d[qi] += hk_popcount(x ^ qw[qi * nw + nfull]);
        }
        for (int qi = 0; qi < qb; qi++) {
            if (HK_UNLIKELY(d[qi] < tau[qi])) {
                sinks[qi]->accept(sinks[qi], d[qi], j);
                tau[qi] = sinks[qi]->tau;
            }
        }
    }
}

/* Copies rows [j0, j1) into T word-major: word w of row j0 + i goes to T[w * bp + i].  The
 * vector scan then reads eight rows' word w with one load.  Done once per database block and
 * reused by every query of the tile. */
HK_INLINE void hk_transpose(const uint8_t *db, int64_t j0, int64_t j1, const size_t cs,
                            uint64_t *T, int64_t bp)
{
    const size_t nfull = cs / 8, tail = cs % 8;
    const int64_t first = hk_first_overlap_row(cs);
    const uint8_t *c = db + (size_t)j0 * cs;
    for (int64_t j = j0; j < j1; j++, c += cs) {
        const int64_t i = j - j0;
        for (size_t w = 0; w < nfull; w++) T[(int64_t)w * bp + i] = hk_load8(c + 8 * w);
        if (tail) T[(int64_t)nfull * bp + i] = hk_tail_word(c, cs, tail, j >= first);
    }
}

typedef void (*scan_fn)(const uint8_t *const *, const uint8_t *, int64_t, int64_t, size_t,
                        Sink *const *);
typedef void (*transpose_fn)(const uint8_t *, int64_t, int64_t, size_t, uint64_t *, int64_t);

/* CSV is the code size in bytes, 0 for "any size, read at run time".  The _safe wrappers never
 * use the overlapping tail load, for the first rows of the database. */
#define HK_WRAP(PFX, ATTR, CSV, QB, OVL, SUFFIX)                                              \
    static ATTR void scan_##PFX##_q##QB##_##CSV##SUFFIX(const uint8_t *const *qp,             \
                                                        const uint8_t *db, int64_t j0,        \
                                                        int64_t j1, size_t cs,                \
                                                        Sink *const *sinks)                   \
    {                                                                                          \
        uint64_t qw[QB * (CSV ? (CSV + 7) / 8 : HK_MAX_WORDS)];                                \
        hk_scan(qp, db, j0, j1, CSV ? (size_t)CSV : cs, QB, OVL, qw, sinks);                   \
    }
#define HK_WRAP_ALL(PFX, ATTR, CSV)                                                            \
    HK_WRAP(PFX, ATTR, CSV, 1, HK_LITTLE_ENDIAN, )                                             \
    HK_WRAP(PFX, ATTR, CSV, 4, HK_LITTLE_ENDIAN, )                                             \
    static ATTR void transpose_##PFX##_##CSV(const uint8_t *db, int64_t j0, int64_t j1,       \
                                             size_t cs, uint64_t *T, int64_t bp)              \
    {                                                                                          \
        hk_transpose(db, j0, j1, CSV ? (size_t)CSV : cs, T, bp);                               \
    }
#define HK_SPECIALISED(X, PFX, ATTR)                                                           \
    X(PFX, ATTR, 1) X(PFX, ATTR, 2) X(PFX, ATTR, 3) X(PFX, ATTR, 4) X(PFX, ATTR, 5)            \
    X(PFX, ATTR, 6) X(PFX, ATTR, 7) X(PFX, ATTR, 8) X(PFX, ATTR, 12) X(PFX, ATTR, 16)          \
    X(PFX, ATTR, 24) X(PFX, ATTR, 32) X(PFX, ATTR, 64) X(PFX, ATTR, 0)
#define HK_ENTRY(PFX, ATTR, CSV)                                                               \
    {CSV, scan_##PFX##_q1_##CSV, scan_##PFX##_q4_##CSV, transpose_##PFX##_##CSV},

typedef struct {
    int cs; /* 0: the catch-all entry, last in each table */
    scan_fn q1, q4;
    transpose_fn transpose;
} ScanEntry;

typedef struct {
    const ScanEntry *table;
    scan_fn safe_q1; /* any size, no overlapping loads */
    int vector;      /* the AVX-512 transposed scan is available */
    const char *name;
} Dispatch;

HK_SPECIALISED(HK_WRAP_ALL, generic, )
HK_WRAP(generic, , 0, 1, 0, _safe)
static const ScanEntry generic_table[] = {HK_SPECIALISED(HK_ENTRY, generic, )};
static const Dispatch generic_dispatch = {generic_table, scan_generic_q1_0_safe, 0, "generic"};

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define HK_X86 1
#define HK_POPCNT_ATTR __attribute__((target("popcnt")))
HK_SPECIALISED(HK_WRAP_ALL, popcnt, HK_POPCNT_ATTR)
HK_WRAP(popcnt, HK_POPCNT_ATTR, 0, 1, 0, _safe)
static const ScanEntry popcnt_table[] = {HK_SPECIALISED(HK_ENTRY, popcnt, HK_POPCNT_ATTR)};
static const Dispatch popcnt_dispatch = {popcnt_table, scan_popcnt_q1_0_safe, 0, "popcnt"};
static const Dispatch avx512_dispatch = {popcnt_table, scan_popcnt_q1_0_safe, 1, "avx512"};
#else
#define HK_X86 0
#endif

/* ------------------------------------------------------------------------------------------ */
/* The vector scan (x86 with AVX-512 VPOPCNTDQ): over a transposed block, eight rows per
 * instruction, so a distance costs a fraction of a load, xor, popcnt and add per word.       */

#if HK_X86
#include <immintrin.h>
#define HK_AVX512_ATTR __attribute__((target("avx512f,avx512vpopcntdq,popcnt")))

/* Eight rows from row j of T: their distances to each query, accepted where below tau.  With
 * `tail`, only the rows under `valid` are loaded: T may be the database itself (8-byte codes,
 * read in place), whose last group of eight can end just before an unmapped page, and a masked
 * lane is never read, so it cannot fault.  Whole groups use plain loads, which are faster. */
static HK_AVX512_ATTR inline __attribute__((always_inline)) void
hk_scan_t_group(const uint64_t *T, int64_t bp, int64_t j, int64_t row0, size_t nw,
                const uint64_t *qw, const int qb, Sink *const *sinks, __m512i *tau,
                const int tail, const __mmask8 valid)
{
    __m512i acc[4];
    __m512i x = tail ? _mm512_maskz_loadu_epi64(valid, (const void *)(T + j))
                     : _mm512_loadu_si512((const void *)(T + j));
    for (int qi = 0; qi < qb; qi++)
        acc[qi] = _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64((long long)qw[qi * nw])));
    for (size_t w = 1; w < nw; w++) {
        const uint64_t *p = T + (int64_t)w * bp + j;
        x = tail ? _mm512_maskz_loadu_epi64(valid, (const void *)p)
                 : _mm512_loadu_si512((const void *)p);
        for (int qi = 0; qi < qb; qi++)
            acc[qi] = _mm512_add_epi64(
                acc[qi], _mm512_popcnt_epi64(_mm512_xor_si512(
                             x, _mm512_set1_epi64((long long)qw[qi * nw + w]))));
    }
    for (int qi = 0; qi < qb; qi++) {
        unsigned m = _mm512_mask_cmplt_epi64_mask(valid, acc[qi], tau[qi]);
        if (HK_UNLIKELY(m)) {
            int64_t d[8];
            _mm512_storeu_si512((void *)d, acc[qi]);
            do { /* ascending rows, and tau may shrink within the eight */
                const int i = __builtin_ctz(m);
                m &= m - 1;
                if (d[i] < sinks[qi]->tau)
                    sinks[qi]->accept(sinks[qi], (int32_t)d[i], row0 + j + i);
            } while (m);
            tau[qi] = _mm512_set1_epi64(sinks[qi]->tau);
        }
    }
}

static HK_AVX512_ATTR inline __attribute__((always_inline)) void
hk_scan_t(const uint64_t *T, int64_t bp, int64_t count, int64_t row0, size_t nw,
          const uint64_t *qw, const int qb, Sink *const *sinks)
{
    __m512i tau[4];
    for (int qi = 0; qi < qb; qi++) tau[qi] = _mm512_set1_epi64(sinks[qi]->tau);
    int64_t j = 0;
    for (; j + 8 <= count; j += 8)
        hk_scan_t_group(T, bp, j, row0, nw, qw, qb, sinks, tau, 0, (__mmask8)0xFF);
    if (j < count)
        hk_scan_t_group(T, bp, j, row0, nw, qw, qb, sinks, tau, 1,
                        (__mmask8)((1u << (count - j)) - 1));
}

static HK_AVX512_ATTR void scan_t_q1(const uint64_t *T, int64_t bp, int64_t count, int64_t row0,
                                     size_t nw, const uint64_t *qw, Sink *const *sinks)
{
    hk_scan_t(T, bp, count, row0, nw, qw, 1, sinks);
}

static HK_AVX512_ATTR void scan_t_q4(const uint64_t *T, int64_t bp, int64_t count, int64_t row0,
                                     size_t nw, const uint64_t *qw, Sink *const *sinks)
{
    hk_scan_t(T, bp, count, row0, nw, qw, 4, sinks);
}

/* The vector scan for few queries over codes of 16, 32 or 64 bytes, read in place: eight rows
 * are nw vectors of popcounts, and pairwise permute-and-add folds each row's nw words into one
 * lane, leaving the eight distances in row order. */
static HK_AVX512_ATTR inline __attribute__((always_inline)) void
hk_scan_rm(const uint8_t *db, int64_t j0, int64_t j1, const size_t nw, const uint64_t *qw,
           Sink *s)
{
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512i odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    long long qrep[8];
    for (int i = 0; i < 8; i++) qrep[i] = (long long)qw[(size_t)i % nw];
    const __m512i q = _mm512_loadu_si512((const void *)qrep);
    __m512i tau = _mm512_set1_epi64(s->tau);
    const uint64_t *base = (const uint64_t *)(const void *)db;
    for (int64_t j = j0; j < j1; j += 8) {
        const int64_t rows = j1 - j < 8 ? j1 - j : 8;
        const int64_t lanes = rows * (int64_t)nw;
        __m512i v[8];
        for (size_t i = 0; i < nw; i++) {
            const int64_t left = lanes - 8 * (int64_t)i;
            const __mmask8 m = left >= 8 ? (__mmask8)0xFF
                                         : (left <= 0 ? (__mmask8)0 : (__mmask8)((1u << left) - 1));
            const __m512i x = _mm512_maskz_loadu_epi64(m, base + (size_t)j * nw + 8 * i);
            v[i] = _mm512_popcnt_epi64(_mm512_xor_si512(x, q));
        }
        for (size_t n = nw; n > 1; n /= 2)
            for (size_t i = 0; i < n / 2; i++)
                v[i] = _mm512_add_epi64(_mm512_permutex2var_epi64(v[2 * i], even, v[2 * i + 1]),
                                        _mm512_permutex2var_epi64(v[2 * i], odd, v[2 * i + 1]));
        const __mmask8 valid = (__mmask8)((1u << rows) - 1);
        unsigned m = _mm512_mask_cmplt_epi64_mask(valid, v[0], tau);
        if (HK_UNLIKELY(m)) {
            int64_t d[8];
            _mm512_storeu_si512((void *)d, v[0]);
            do {
                const int i = __builtin_ctz(m);
                m &= m - 1;
                if (d[i] < s->tau) s->accept(s, (int32_t)d[i], j + i);
            } while (m);
            tau = _mm512_set1_epi64(s->tau);
        }
    }
}

#define HK_RM(NW)                                                                              \
    static HK_AVX512_ATTR void scan_rm_##NW(const uint8_t *db, int64_t j0, int64_t j1,         \
                                            const uint64_t *qw, Sink *s)                       \
    {                                                                                          \
        hk_scan_rm(db, j0, j1, NW, qw, s);                                                     \
    }
HK_RM(2)
HK_RM(4)
HK_RM(8)

typedef void (*scan_rm_fn)(const uint8_t *, int64_t, int64_t, const uint64_t *, Sink *);

static scan_rm_fn row_major_scan(size_t cs)
{
    return cs == 16 ? scan_rm_2 : cs == 32 ? scan_rm_4 : cs == 64 ? scan_rm_8 : NULL;
}

static int hk_cpu_has_avx512_popcnt(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
}
#endif

static const Dispatch *active = &generic_dispatch;

static const ScanEntry *lookup(size_t cs)
{
    const ScanEntry *table = active->table;
    const size_t n = sizeof(generic_table) / sizeof(generic_table[0]);
    for (size_t i = 0; i + 1 < n; i++)
        if ((size_t)table[i].cs == cs) return &table[i];
    return &table[n - 1];
}

/* ------------------------------------------------------------------------------------------ */
/* Jobs and tasks.                                                                             */

enum { MODE_KNN, MODE_RANGE, MODE_DIST };

typedef struct {
    int mode;
    const uint8_t *q, *db;
    size_t cs;
    int32_t bits;
    int64_t nq, n, k;
    int32_t radius;
    int64_t tile;      /* queries per task */
    int64_t ntiles, nchunks, chunk;
    const ScanEntry *scan;
    const Dispatch *disp;
    int vector;        /* tiles of >= HK_VECTOR_MIN_QUERIES use the transposed vector scan */
    int64_t bp;        /* rows per transposed block */
    /* knn outputs: (nq, k) when nchunks == 1, else per-chunk partials (nchunks, nq, k) */
    int32_t *out_d;
    int64_t *out_p;
    /* range: one sink per (chunk, query), kept until the merge */
    Sink *range_sinks;
    uint16_t *out_dist;
    int64_t next_task; /* atomic */
    int failed;        /* atomic: a task ran out of memory */
} Job;

static int64_t knn_cap(const Job *job, int64_t rows)
{
    int64_t cap = job->k < 256 ? job->k + 256 : 2 * job->k;
    return cap < rows ? cap : (rows > job->k ? rows : job->k + 1);
}

/* Stable counting sort of (d, row) pairs by d, so ties stay in row order; writes at most
 * `limit` pairs.  Used to finish a top-k buffer and to merge per-chunk results. */
static void sort_by_distance(const int32_t *d, const int64_t *p, int64_t m, int32_t dmax,
                             int64_t *counts, int64_t limit, int32_t *out_d, int64_t *out_p)
{
    memset(counts, 0, (size_t)(dmax + 2) * sizeof(int64_t));
    for (int64_t i = 0; i < m; i++) counts[d[i] + 1]++;
    for (int32_t v = 0; v <= dmax; v++) counts[v + 1] += counts[v];
    for (int64_t i = 0; i < m; i++) {
        const int64_t at = counts[d[i]]++;
        if (at < limit) {
            out_d[at] = d[i];
            out_p[at] = p[i];
        }
    }
}

typedef struct {
    Sink sinks[HK_TILE_QUERIES];
    int64_t *counts;  /* knn: bits + 2 counters for the final sort */
    uint64_t *qwords; /* query words of the tile, HK_TILE_QUERIES x nw */
    uint64_t *T;      /* transposed block, nw x bp */
} Scratch;

static void run_task(Job *job, int64_t task, Scratch *scratch)
{
    const int64_t tile_i = task % job->ntiles, chunk_i = task / job->ntiles;
    const int64_t q0 = tile_i * job->tile;
    const int64_t q1 = q0 + job->tile < job->nq ? q0 + job->tile : job->nq;
    const int64_t j0 = chunk_i * job->chunk;
    const int64_t j1 = j0 + job->chunk < job->n ? j0 + job->chunk : job->n;
    const int64_t nt = q1 - q0;
    const uint8_t *qp[HK_TILE_QUERIES];
    Sink *sp[HK_TILE_QUERIES];

    for (int64_t t = 0; t < nt; t++) {
        Sink *s = job->mode == MODE_RANGE ? &job->range_sinks[chunk_i * job->nq + q0 + t]
                                          : &scratch->sinks[t];
        qp[t] = job->q + (size_t)(q0 + t) * job->cs;
        sp[t] = s;
        if (job->mode == MODE_KNN) {
            s->tau = job->bits + 1;
            s->n_below = 0;
            s->nbuf = 0;
            memset(s->hist, 0, (size_t)(job->bits + 2) * sizeof(int32_t));
        } else if (job->mode == MODE_RANGE) {
            s->tau = job->radius + 1;
            s->accept = range_accept;
        } else {
            s->tau = job->bits + 1;
            s->accept = dist_accept;
            s->row = job->out_dist + (size_t)(q0 + t) * (size_t)job->n;
        }
    }

    const size_t cs = job->cs, nw = (cs + 7) / 8;
    /* 8-byte codes are already word-major: the vector scan reads them in place */
    const int in_place = job->vector && cs == 8;
    const int vector = in_place || (job->vector && nt >= HK_VECTOR_MIN_QUERIES);
#if HK_X86
#define HK_ROW_MAJOR (row_major != NULL)
    /* few queries over 16-, 32- or 64-byte codes: the row-major vector scan, no transposition */
    const scan_rm_fn row_major = job->disp->vector && !vector ? row_major_scan(cs) : NULL;
#else
#define HK_ROW_MAJOR 0
#endif
    const int64_t first = hk_first_overlap_row(cs);
    int64_t block = vector ? job->bp : (int64_t)(HK_BLOCK_BYTES / cs);
    if (block < 64) block = 64;
    if (vector || HK_ROW_MAJOR) {
        for (int64_t t = 0; t < nt; t++) {
            uint64_t *qw = scratch->qwords + (size_t)t * nw;
            for (size_t w = 0; w < cs / 8; w++) qw[w] = hk_load8(qp[t] + 8 * w);
            if (cs % 8) qw[cs / 8] = hk_tail_word(qp[t], cs, cs % 8, 0);
        }
    }
    for (int64_t b0 = j0; b0 < j1; b0 += block) {
        const int64_t b1 = b0 + block < j1 ? b0 + block : j1;
        int64_t s0 = b0;
        if (s0 < first) { /* rows too near the start for the overlapping tail load */
            const int64_t e = first < b1 ? first : b1;
            for (int64_t t = 0; t < nt; t++) job->disp->safe_q1(qp + t, job->db, s0, e, cs, sp + t);
            s0 = e;
        }
        if (s0 >= b1) continue;
        int64_t t = 0;
#if HK_X86
        if (row_major) {
            for (; t < nt; t++) row_major(job->db, s0, b1, scratch->qwords + t * nw, sp[t]);
            continue;
        }
        if (vector) {
            const uint64_t *T = scratch->T;
            if (in_place)
                T = (const uint64_t *)(const void *)(job->db + (size_t)s0 * 8);
            else
                job->scan->transpose(job->db, s0, b1, cs, scratch->T, job->bp);
            for (; t + 4 <= nt; t += 4)
                scan_t_q4(T, job->bp, b1 - s0, s0, nw, scratch->qwords + t * nw, sp + t);
            for (; t < nt; t++)
                scan_t_q1(T, job->bp, b1 - s0, s0, nw, scratch->qwords + t * nw, sp + t);
            continue;
        }
#endif
        for (; t + 4 <= nt; t += 4) job->scan->q4(qp + t, job->db, s0, b1, cs, sp + t);
        for (; t < nt; t++) job->scan->q1(qp + t, job->db, s0, b1, cs, sp + t);
    }

    if (job->mode != MODE_KNN) return;
    for (int64_t t = 0; t < nt; t++) {
        Sink *s = sp[t];
        knn_compact(s);
        const size_t at = ((size_t)chunk_i * (size_t)job->nq + (size_t)(q0 + t)) * (size_t)job->k;
        int32_t *od = job->out_d + at;
        int64_t *op = job->out_p + at;
        sort_by_distance(s->bd, s->bp, s->nbuf, job->bits, scratch->counts, job->k, od, op);
        for (int64_t i = s->nbuf; i < job->k; i++) {
            od[i] = INT32_MAX; /* faiss's sentinels for "fewer than k results" */
            op[i] = -1;
        }
    }
}

static void free_scratch(Scratch *s)
{
    for (int64_t t = 0; t < HK_TILE_QUERIES; t++) {
        free(s->sinks[t].hist);
        free(s->sinks[t].bd);
        free(s->sinks[t].bp);
    }
    free(s->counts);
    free(s->qwords);
    free(s->T);
}

/* Per-thread buffers; returns 0 when out of memory. */
static int alloc_scratch(const Job *job, Scratch *s)
{
    const size_t nw = (job->cs + 7) / 8;
    memset(s, 0, sizeof(*s));
    int ok = 1;
    if (job->disp->vector) {
        s->qwords = malloc((size_t)HK_TILE_QUERIES * nw * sizeof(uint64_t));
        s->T = malloc((size_t)job->bp * nw * sizeof(uint64_t));
        ok = s->qwords && s->T;
    }
    if (job->mode == MODE_KNN && ok) {
        const int64_t cap = knn_cap(job, job->chunk);
        s->counts = malloc((size_t)(job->bits + 2) * sizeof(int64_t));
        ok = s->counts != NULL;
        for (int64_t t = 0; t < job->tile && ok; t++) {
            Sink *k = &s->sinks[t];
            k->k = job->k;
            k->cap = cap;
            k->accept = knn_accept;
            k->hist = malloc((size_t)(job->bits + 2) * sizeof(int32_t));
            k->bd = malloc((size_t)cap * sizeof(int32_t));
            k->bp = malloc((size_t)cap * sizeof(int64_t));
            ok = k->hist && k->bd && k->bp;
        }
    }
    return ok;
}

static void *worker(void *arg)
{
    Job *job = (Job *)arg;
    const int64_t ntasks = job->ntiles * job->nchunks;
    Scratch scratch;
    if (!alloc_scratch(job, &scratch)) __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
    for (;;) {
        if (__atomic_load_n(&job->failed, __ATOMIC_RELAXED)) break;
        const int64_t task = __atomic_fetch_add(&job->next_task, 1, __ATOMIC_RELAXED);
        if (task >= ntasks) break;
        run_task(job, task, &scratch);
    }
    free_scratch(&scratch);
    return NULL;
}

/* Splits the work into tasks.  Few queries and a large database: the database is cut into
 * chunks so that even one query uses every thread (knn and distances only; range results are
 * gathered per query and would need a merge for nothing). */
static void plan_job(Job *job, int threads)
{
    const int64_t nw = (int64_t)(job->cs + 7) / 8;
    job->disp = active;
    job->scan = lookup(job->cs);
    job->vector = active->vector && (job->nq >= HK_VECTOR_MIN_QUERIES || job->cs == 8);
    job->bp = (HK_BLOCK_BYTES / (nw * 8)) & ~(int64_t)7;
    if (job->bp < 64) job->bp = 64;
    job->tile = HK_TILE_QUERIES;
    if (job->mode == MODE_KNN) {
        /* keep one thread's top-k buffers within HK_SCRATCH_BYTES */
        const int64_t per_query = knn_cap(job, job->n) * 12 + 8;
        const int64_t fit = (int64_t)HK_SCRATCH_BYTES / per_query;
        if (fit < job->tile) job->tile = fit < 1 ? 1 : fit;
    }
    job->ntiles = (job->nq + job->tile - 1) / job->tile;
    job->nchunks = 1;
    if (job->mode != MODE_RANGE && job->ntiles < threads) {
        const int64_t want = (threads + job->ntiles - 1) / job->ntiles;
        const int64_t most = job->n / HK_MIN_CHUNK;
        job->nchunks = want < most ? want : (most > 1 ? most : 1);
    }
    job->chunk = (job->n + job->nchunks - 1) / job->nchunks;
    if (job->chunk < 1) job->chunk = 1;
}

/* A persistent pool of helper threads: starting a thread per search costs more than a
 * single-query scan of a million short codes.  Helpers sleep on a condition variable between
 * jobs.  One job at a time uses the pool; a search that finds it busy (another Python thread is
 * searching) runs on its own thread, which gives the same results. */
#if HK_THREADS
#define HK_MAX_HELPERS 255

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_mutex_t busy; /* held by the job that owns the helpers */
    int size;             /* helpers started */
    uint64_t generation;  /* bumped once per job */
    Job *job;
    int wanted;  /* helpers the current job uses: those with index < wanted */
    int running; /* of those, still working */
} Pool;

static Pool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                    PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL, 0, 0};

typedef struct {
    int index;
    uint64_t seen; /* the generation before the job it was started for */
} HelperArg;

static void *helper_main(void *raw)
{
    HelperArg arg = *(HelperArg *)raw;
    free(raw);
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.generation == arg.seen) pthread_cond_wait(&pool.wake, &pool.mu);
        arg.seen = pool.generation;
        if (arg.index >= pool.wanted) continue;
        Job *job = pool.job;
        pthread_mutex_unlock(&pool.mu);
        worker(job);
        pthread_mutex_lock(&pool.mu);
        if (--pool.running == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

/* A forked child has none of the parent's threads: start the pool afresh. */
static void pool_after_fork(void)
{
    pthread_mutex_init(&pool.mu, NULL);
    pthread_mutex_init(&pool.busy, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.size = 0;
    pool.generation = 0;
    pool.job = NULL;
    pool.wanted = 0;
    pool.running = 0;
}
#endif

/* Runs a planned job on `threads` threads, this one included. */
static void exec_job(Job *job, int threads)
{
    const int64_t ntasks = job->ntiles * job->nchunks;
    job->next_task = 0;
    job->failed = 0;
    if (threads > ntasks) threads = (int)ntasks;
#if HK_THREADS
    int helpers = threads - 1 < HK_MAX_HELPERS ? threads - 1 : HK_MAX_HELPERS;
    if (helpers > 0 && pthread_mutex_trylock(&pool.busy) == 0) {
        pthread_mutex_lock(&pool.mu);
        pool.generation++;
        while (pool.size < helpers) {
            HelperArg *arg = malloc(sizeof(HelperArg));
            pthread_t tid;
            if (!arg) break;
            arg->index = pool.size;
            arg->seen = pool.generation - 1;
            if (pthread_create(&tid, NULL, helper_main, arg) != 0) {
                free(arg);
                break;
            }
            pthread_detach(tid);
            pool.size++;
        }
        if (helpers > pool.size) helpers = pool.size;
        pool.job = job;
        pool.wanted = helpers;
        pool.running = helpers;
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.mu);
        worker(job);
        pthread_mutex_lock(&pool.mu);
        while (pool.running > 0) pthread_cond_wait(&pool.done, &pool.mu);
        pool.job = NULL;
        pthread_mutex_unlock(&pool.mu);
        pthread_mutex_unlock(&pool.busy);
        return;
    }
#endif
    (void)threads;
    worker(job);
}

/* Merges per-chunk top-k lists.  Chunks are ascending row ranges, so concatenating a query's
 * lists in chunk order and sorting stably by distance gives (distance, row) order. */
static int merge_chunks(const Job *job, const int32_t *part_d, const int64_t *part_p,
                        int32_t *out_d, int64_t *out_p)
{
    const int64_t k = job->k, nq = job->nq, m = job->nchunks * k;
    int32_t *cd = malloc((size_t)m * sizeof(int32_t));
    int64_t *cp = malloc((size_t)m * sizeof(int64_t));
    int64_t *counts = malloc((size_t)(job->bits + 3) * sizeof(int64_t));
    const int ok = cd && cp && counts;
    for (int64_t qi = 0; ok && qi < nq; qi++) {
        int64_t used = 0;
        for (int64_t c = 0; c < job->nchunks; c++) {
            const size_t at = ((size_t)c * (size_t)nq + (size_t)qi) * (size_t)k;
            for (int64_t i = 0; i < k && part_p[at + i] >= 0; i++, used++) {
                cd[used] = part_d[at + i];
                cp[used] = part_p[at + i];
            }
        }
        int32_t *od = out_d + (size_t)qi * (size_t)k;
        int64_t *op = out_p + (size_t)qi * (size_t)k;
        sort_by_distance(cd, cp, used, job->bits, counts, k, od, op);
        for (int64_t i = used; i < k; i++) {
            od[i] = INT32_MAX;
            op[i] = -1;
        }
    }
    free(cd);
    free(cp);
    free(counts);
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* Python bindings.  Arguments are validated in hashsdk/_search.py; the checks here only keep
 * a wrong call from reading or writing out of bounds.                                        */

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t need,
                      const char *what)
{
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len != need) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous buffer of %zd bytes, got %zd",
                     what, need, view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int check_shape(Py_ssize_t cs, int bits, Py_ssize_t nq, Py_ssize_t n, int threads)
{
    if (bits < 1 || bits > HK_MAX_BITS || cs != (bits + 7) / 8 || nq < 0 || n < 0 ||
        threads < 1) {
        PyErr_Format(PyExc_ValueError,
                     "bad kernel arguments: bits=%d (1..%d), code_size=%zd (ceil(bits/8)), "
                     "nq=%zd, n=%zd, threads=%d (>= 1)",
                     bits, HK_MAX_BITS, cs, nq, n, threads);
        return -1;
    }
    return 0;
}

static void init_job(Job *job, int mode, const Py_buffer *q, const Py_buffer *db, Py_ssize_t cs,
                     int bits, Py_ssize_t nq, Py_ssize_t n)
{
    memset(job, 0, sizeof(*job));
    job->mode = mode;
    job->q = q->buf;
    job->db = db->buf;
    job->cs = (size_t)cs;
    job->bits = bits;
    job->nq = nq;
    job->n = n;
}

PyDoc_STRVAR(knn_doc,
             "knn(queries, db, nq, n, code_size, bits, k, threads, out_d, out_rows)\n\n"
             "Top-k by (distance, row).  queries: nq*code_size bytes; db: n*code_size bytes;\n"
             "out_d: writable int32 (nq, k); out_rows: writable int64 (nq, k).  Missing\n"
             "results are distance 2**31-1, row -1.");

static PyObject *py_knn(PyObject *self, PyObject *args)
{
    PyObject *qo, *dbo, *odo, *opo;
    Py_ssize_t nq, n, cs, k;
    int bits, threads;
    if (!PyArg_ParseTuple(args, "OOnnniniOO", &qo, &dbo, &nq, &n, &cs, &bits, &k, &threads,
                          &odo, &opo))
        return NULL;
    if (check_shape(cs, bits, nq, n, threads) < 0) return NULL;
    if (k < 1) {
        PyErr_SetString(PyExc_ValueError, "k must be >= 1");
        return NULL;
    }
    Py_buffer q, db, od, op;
    if (get_buffer(qo, &q, 0, nq * cs, "queries") < 0) return NULL;
    if (get_buffer(dbo, &db, 0, n * cs, "db") < 0) goto fail_q;
    if (get_buffer(odo, &od, 1, nq * k * 4, "out_d") < 0) goto fail_db;
    if (get_buffer(opo, &op, 1, nq * k * 8, "out_rows") < 0) goto fail_od;

    Job job;
    init_job(&job, MODE_KNN, &q, &db, cs, bits, nq, n);
    job.k = k;
    int failed = 0;
    if (nq > 0) {
        Py_BEGIN_ALLOW_THREADS
        plan_job(&job, threads);
        int32_t *part_d = NULL;
        int64_t *part_p = NULL;
        if (job.nchunks > 1) {
            const size_t m = (size_t)job.nchunks * (size_t)nq * (size_t)k;
            part_d = malloc(m * sizeof(int32_t));
            part_p = malloc(m * sizeof(int64_t));
            if (!part_d || !part_p) { /* no room for partials: one chunk, one thread */
                threads = 1;
                plan_job(&job, threads);
            }
        }
        job.out_d = job.nchunks > 1 ? part_d : od.buf;
        job.out_p = job.nchunks > 1 ? part_p : op.buf;
        exec_job(&job, threads);
        failed = job.failed;
        if (!failed && job.nchunks > 1) failed = !merge_chunks(&job, part_d, part_p, od.buf, op.buf);
        free(part_d);
        free(part_p);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&op);
    PyBuffer_Release(&od);
    PyBuffer_Release(&db);
    PyBuffer_Release(&q);
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_od:
    PyBuffer_Release(&od);
fail_db:
    PyBuffer_Release(&db);
fail_q:
    PyBuffer_Release(&q);
    return NULL;
}

PyDoc_STRVAR(range_doc,
             "range_search(queries, db, nq, n, code_size, bits, radius, threads)\n\n"
             "-> (lims, distances, rows) as bytearrays of int64 (nq + 1), int32 and int64.\n"
             "Query i's results are [lims[i], lims[i+1]), sorted by (distance, row).");

static PyObject *py_range(PyObject *self, PyObject *args)
{
    PyObject *qo, *dbo;
    Py_ssize_t nq, n, cs;
    int bits, radius, threads;
    if (!PyArg_ParseTuple(args, "OOnnniii", &qo, &dbo, &nq, &n, &cs, &bits, &radius, &threads))
        return NULL;
    if (check_shape(cs, bits, nq, n, threads) < 0) return NULL;
    if (radius < 0) {
        PyErr_SetString(PyExc_ValueError, "radius must be >= 0");
        return NULL;
    }
    if (radius > bits) radius = bits;
    Py_buffer q, db;
    if (get_buffer(qo, &q, 0, nq * cs, "queries") < 0) return NULL;
    if (get_buffer(dbo, &db, 0, n * cs, "db") < 0) {
        PyBuffer_Release(&q);
        return NULL;
    }
    Job job;
    init_job(&job, MODE_RANGE, &q, &db, cs, bits, nq, n);
    job.radius = radius;
    job.range_sinks = calloc(nq > 0 ? (size_t)nq : 1, sizeof(Sink));
    if (!job.range_sinks) {
        PyBuffer_Release(&db);
        PyBuffer_Release(&q);
        return PyErr_NoMemory();
    }
    int failed = 0;
    if (nq > 0 && n > 0) {
        Py_BEGIN_ALLOW_THREADS
        plan_job(&job, threads);
        exec_job(&job, threads);
        Py_END_ALLOW_THREADS
        failed = job.failed;
        for (Py_ssize_t i = 0; i < nq; i++) failed |= job.range_sinks[i].failed;
    }
    PyObject *lims = NULL, *dist = NULL, *rows = NULL, *result = NULL;
    int64_t total = 0;
    for (Py_ssize_t i = 0; i < nq && !failed; i++) total += job.range_sinks[i].nbuf;
    int64_t *counts = failed ? NULL : malloc((size_t)(bits + 3) * sizeof(int64_t));
    if (failed || !counts) {
        PyErr_NoMemory();
        goto done;
    }
    lims = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)((nq + 1) * 8));
    dist = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(total * 4));
    rows = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(total * 8));
    if (!lims || !dist || !rows) goto done;
    {
        int64_t *L = (int64_t *)PyByteArray_AS_STRING(lims);
        int32_t *D = (int32_t *)PyByteArray_AS_STRING(dist);
        int64_t *R = (int64_t *)PyByteArray_AS_STRING(rows);
        int64_t at = 0;
        L[0] = 0;
        for (Py_ssize_t i = 0; i < nq; i++) {
            Sink *s = &job.range_sinks[i];
            sort_by_distance(s->bd, s->bp, s->nbuf, radius, counts, s->nbuf, D + at, R + at);
            at += s->nbuf;
            L[i + 1] = at;
        }
    }
    result = PyTuple_Pack(3, lims, dist, rows);
done:
    free(counts);
    for (Py_ssize_t i = 0; i < nq; i++) {
        free(job.range_sinks[i].bd);
        free(job.range_sinks[i].bp);
    }
    free(job.range_sinks);
    Py_XDECREF(lims);
    Py_XDECREF(dist);
    Py_XDECREF(rows);
    PyBuffer_Release(&db);
    PyBuffer_Release(&q);
    return result;
}

PyDoc_STRVAR(dist_doc, "distances(queries, db, nq, n, code_size, bits, threads, out)\n\n"
                       "Fills out, a writable uint16 (nq, n), with every Hamming distance.");

static PyObject *py_distances(PyObject *self, PyObject *args)
{
    PyObject *qo, *dbo, *oo;
    Py_ssize_t nq, n, cs;
    int bits, threads;
    if (!PyArg_ParseTuple(args, "OOnnniiO", &qo, &dbo, &nq, &n, &cs, &bits, &threads, &oo))
        return NULL;
    if (check_shape(cs, bits, nq, n, threads) < 0) return NULL;
    Py_buffer q, db, out;
    if (get_buffer(qo, &q, 0, nq * cs, "queries") < 0) return NULL;
    if (get_buffer(dbo, &db, 0, n * cs, "db") < 0) {
        PyBuffer_Release(&q);
        return NULL;
    }
    if (get_buffer(oo, &out, 1, nq * n * 2, "out") < 0) {
        PyBuffer_Release(&db);
        PyBuffer_Release(&q);
        return NULL;
    }
    Job job;
    init_job(&job, MODE_DIST, &q, &db, cs, bits, nq, n);
    job.out_dist = out.buf;
    if (nq > 0 && n > 0) {
        Py_BEGIN_ALLOW_THREADS
        plan_job(&job, threads);
        exec_job(&job, threads);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&db);
    PyBuffer_Release(&q);
    Py_RETURN_NONE;
}

static void append_name(PyObject *list, const char *name)
{
    PyObject *s = PyUnicode_FromString(name);
    if (s) {
        PyList_Append(list, s);
        Py_DECREF(s);
    }
}

static PyObject *available_dispatches(void)
{
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
#if HK_X86
    if (hk_cpu_has_avx512_popcnt()) append_name(out, "avx512");
    if (__builtin_cpu_supports("popcnt")) append_name(out, "popcnt");
#endif
    append_name(out, "generic");
    return out;
}

/* The best path this CPU runs. */
static const Dispatch *best_dispatch(void)
{
#if HK_X86
    __builtin_cpu_init();
    if (hk_cpu_has_avx512_popcnt()) return &avx512_dispatch;
    if (__builtin_cpu_supports("popcnt")) return &popcnt_dispatch;
#endif
    return &generic_dispatch;
}

static PyObject *py_set_dispatch(PyObject *self, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    const Dispatch *want = NULL;
    if (strcmp(name, "auto") == 0) want = best_dispatch();
    else if (strcmp(name, "generic") == 0) want = &generic_dispatch;
#if HK_X86
    else if (strcmp(name, "popcnt") == 0 && __builtin_cpu_supports("popcnt"))
        want = &popcnt_dispatch;
    else if (strcmp(name, "avx512") == 0 && hk_cpu_has_avx512_popcnt())
        want = &avx512_dispatch;
#endif
    if (!want) {
        PyErr_Format(PyExc_ValueError,
                     "dispatch %R is unknown or this CPU cannot run it; expected 'auto', "
                     "'generic' or one of %R",
                     arg, available_dispatches());
        return NULL;
    }
    active = want;
    return PyUnicode_FromString(active->name);
}

static PyObject *py_dispatch(PyObject *self, PyObject *unused)
{
    return PyUnicode_FromString(active->name);
}

static PyObject *py_dispatches(PyObject *self, PyObject *unused)
{
    return available_dispatches();
}

static PyMethodDef methods[] = {
    {"knn", py_knn, METH_VARARGS, knn_doc},
    {"range_search", py_range, METH_VARARGS, range_doc},
    {"distances", py_distances, METH_VARARGS, dist_doc},
    {"set_dispatch", py_set_dispatch, METH_O,
     "set_dispatch('auto' | 'popcnt' | 'generic') -> the name now in use"},
    {"dispatch", py_dispatch, METH_NOARGS,
     "the path in use: 'avx512' (popcnt + AVX-512 VPOPCNTDQ), 'popcnt' or 'generic'"},
    {"dispatches", py_dispatches, METH_NOARGS, "the paths this CPU can run, best first"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernel", "Exact Hamming search over bit-packed codes.", -1, methods,
};

PyMODINIT_FUNC PyInit__kernel(void)
{
    active = best_dispatch();
#if HK_THREADS
    pthread_atfork(NULL, NULL, pool_after_fork);
#endif
    return PyModule_Create(&module);
}
