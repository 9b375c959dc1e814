/* hashsdk._mih: exact multi-index hashing over bit-packed codes, after Norouzi, Punjani and
 * Fleet ("Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012; TPAMI 2014).
 *
 * Codes are rows of cs bytes, bit i of a code at bit 7 - i % 8 of byte i / 8 (hashsdk.codes).
 * The bits are cut into m disjoint substrings: table j holds bits [start_j, start_j + len_j),
 * len_j <= 26.  Table j is a direct-addressed CSR: offsets_j, 2^len_j + 1 uint32, and rows_j,
 * n uint32, rows ascending within each bucket (a stable counting sort, in build).
 *
 * k-NN, exact.  For substring radius s = 0, 1, 2, ... and table j = 0 .. m-1 in turn, every
 * bucket whose key is at distance exactly s from the query's substring j is read, and each row
 * not seen before is scored by its full Hamming distance.  Once table j has been read at radius
 * s, every code within distance m*s + j of the query has been seen: a code at distance d that
 * was not seen has substring distance >= s + 1 in tables 0..j and >= s in the others, so
 * d >= (j + 1)(s + 1) + (m - j - 1) s = m s + j + 1.  The search stops when it holds k results
 * and the k-th by (distance, row) is within that bound: no unseen code can come before it, ties
 * at the k-th distance included, so the answer is the flat scan's, row for row.  A table read
 * at s = len_j has given every row, and the search ends there too.
 *
 * Range search, exact: a code within radius R has a substring within floor(R / m), so radii
 * 0 .. floor(R / m) are read in every table.
 *
 * Each query has a work budget (buckets read plus rows scored).  A query past it stops and is
 * flagged, and the caller scans it with the flat kernel instead: no query costs much more than
 * a scan, whatever the codes (short, uniform random, a small database).  Rows set in the dead
 * bitmap (removed, not yet dropped) are skipped.  Queries are split over threads; the GIL is
 * released for the whole call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <pthread.h>
#define MIH_THREADS 1
#else
#define MIH_THREADS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define mih_popcount(x) __builtin_popcountll(x)
#else
#include <intrin.h>
#define mih_popcount(x) ((int)__popcnt64(x))
#endif

#define MIH_MAX_LEN 26

/* ---- codes ---------------------------------------------------------------------------------- */

static uint32_t substring(const uint8_t *code, int start, int len)
{
    /* the bits [start, start + len) as an integer, the first bit the most significant */
    int first = start >> 3, shift = start & 7, nbytes = (shift + len + 7) >> 3;
    uint64_t v = 0;
    for (int b = 0; b < nbytes; b++) v = (v << 8) | code[first + b];
    v >>= (nbytes * 8 - shift - len);
    return (uint32_t)(v & ((1ull << len) - 1));
}

static int distance(const uint8_t *a, const uint8_t *b, size_t cs)
{
    int d = 0;
    size_t i = 0;
    for (; i + 8 <= cs; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        d += mih_popcount(x ^ y);
    }
    for (; i < cs; i++) d += mih_popcount((uint64_t)(a[i] ^ b[i]));
    return d;
}

/* ---- the tables ----------------------------------------------------------------------------- */

typedef struct {
    int m;
    const int32_t *start, *len;
    const uint32_t *offsets; /* table j's at offsets + base[j] */
    const int64_t *base;
    const uint32_t *rows; /* table j's at rows + j * n */
    int64_t n;            /* rows covered by the tables */
    const uint8_t *codes;
    size_t cs;
    const uint8_t *dead; /* bitmap of n bits, or NULL */
} Tables;

/* A thread's scratch: the rows seen by the current query, and how to forget them. */
typedef struct {
    uint8_t *seen;
    uint32_t *touched;
    int64_t ntouched, cap;
} Seen;

static int seen_init(Seen *s, int64_t n)
{
    s->seen = calloc((size_t)(n + 7) / 8 + 1, 1);
    s->cap = 1024;
    s->touched = malloc((size_t)s->cap * sizeof(uint32_t));
    s->ntouched = 0;
    return s->seen && s->touched ? 0 : -1;
}

static void seen_free(Seen *s)
{
    free(s->seen);
    free(s->touched);
}

/* 1 if row r was new (and is now marked), 0 if seen; -1 when out of memory */
static int seen_mark(Seen *s, uint32_t r)
{
    if (s->seen[r >> 3] & (1u << (r & 7))) return 0;
    if (s->ntouched == s->cap) {
        uint32_t *grown = realloc(s->touched, (size_t)s->cap * 2 * sizeof(uint32_t));
        if (!grown) return -1;
        s->touched = grown;
        s->cap *= 2;
    }
    s->seen[r >> 3] |= (uint8_t)(1u << (r & 7));
    s->touched[s->ntouched++] = r;
    return 1;
}

static void seen_clear(Seen *s)
{
    for (int64_t i = 0; i < s->ntouched; i++) s->seen[s->touched[i] >> 3] = 0;
    s->ntouched = 0;
}

static int is_dead(const Tables *t, uint32_t r)
{
    return t->dead && (t->dead[r >> 3] & (1u << (r & 7)));
}

/* Calls visit(ctx, row, distance) for each new, live row in the buckets of table j at
 * substring distance exactly s from key; returns the work done, or -1 when out of memory. */
typedef int (*visit_fn)(void *ctx, uint32_t row, int d);

static int64_t read_radius(const Tables *t, int j, uint32_t key, int s, const uint8_t *q,
                           Seen *seen, visit_fn visit, void *ctx)
{
    int len = t->len[j];
    const uint32_t *off = t->offsets + t->base[j], *rows = t->rows + (size_t)j * t->n;
    uint64_t limit = 1ull << len, mask = s ? (1ull << s) - 1 : 0;
    int64_t work = 0;
    while (mask < limit) {
        uint32_t bucket = key ^ (uint32_t)mask;
        work++;
        for (uint32_t i = off[bucket]; i < off[bucket + 1]; i++) {
            uint32_t r = rows[i];
            int fresh = seen_mark(seen, r);
            work++;
            if (fresh < 0) return -1;
            if (fresh && !is_dead(t, r) &&
                visit(ctx, r, distance(q, t->codes + (size_t)r * t->cs, t->cs)) < 0)
                return -1;
        }
        if (!s) break;
        /* the next mask with s bits set (Gosper) */
        uint64_t c = mask & (~mask + 1), r = mask + c;
        mask = (((r ^ mask) >> 2) / c) | r;
    }
    return work;
}

/* ---- k-NN ----------------------------------------------------------------------------------- */

typedef struct {
    int64_t k, size;
    int32_t *d; /* a max-heap by (distance, row): the root is the worst kept */
    int64_t *r;
} Heap;

static int worse(int32_t d1, int64_t r1, int32_t d2, int64_t r2)
{
    return d1 > d2 || (d1 == d2 && r1 > r2);
}

static void heap_sift_down(Heap *h, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, w = i;
        if (l < h->size && worse(h->d[l], h->r[l], h->d[w], h->r[w])) w = l;
        if (l + 1 < h->size && worse(h->d[l + 1], h->r[l + 1], h->d[w], h->r[w])) w = l + 1;
        if (w == i) return;
        int32_t td = h->d[i];
        int64_t tr = h->r[i];
        h->d[i] = h->d[w], h->r[i] = h->r[w], h->d[w] = td, h->r[w] = tr;
        i = w;
    }
}

static int heap_visit(void *ctx, uint32_t row, int d)
{
    Heap *h = ctx;
    if (h->size < h->k) {
        int64_t i = h->size++;
        h->d[i] = d, h->r[i] = row;
        while (i > 0 && worse(h->d[i], h->r[i], h->d[(i - 1) / 2], h->r[(i - 1) / 2])) {
            int64_t p = (i - 1) / 2;
            int32_t td = h->d[i];
            int64_t tr = h->r[i];
            h->d[i] = h->d[p], h->r[i] = h->r[p], h->d[p] = td, h->r[p] = tr;
            i = p;
        }
    } else if (worse(h->d[0], h->r[0], d, row)) {
        h->d[0] = d, h->r[0] = row;
        heap_sift_down(h, 0);
    }
    return 0;
}

/* One query: 1 done, 0 over budget (the caller scans it), -1 out of memory. */
static int knn_one(const Tables *t, const uint8_t *q, Heap *h, Seen *seen, int64_t budget)
{
    uint32_t key[64];
    int maxlen = 0;
    for (int j = 0; j < t->m; j++) {
        key[j] = substring(q, t->start[j], t->len[j]);
        if (t->len[j] > maxlen) maxlen = t->len[j];
    }
    int64_t work = 0;
    h->size = 0;
    for (int s = 0; s <= maxlen; s++) {
        for (int j = 0; j < t->m; j++) {
            if (s > t->len[j]) continue;
            int64_t w = read_radius(t, j, key[j], s, q, seen, heap_visit, h);
            if (w < 0) return -1;
            work += w;
            if (s == t->len[j]) return 1; /* table j has given every row */
            if (h->size == h->k && h->d[0] <= (int64_t)t->m * s + j) return 1;
            if (work > budget) return 0;
        }
    }
    return 1;
}

/* ---- range search ----------------------------------------------------------------------------- */

typedef struct {
    int radius;
    int64_t size, cap;
    int32_t *d;
    int64_t *r;
} Found;

static int found_visit(void *ctx, uint32_t row, int d)
{
    Found *f = ctx;
    if (d > f->radius) return 0;
    if (f->size == f->cap) {
        int64_t cap = f->cap ? 2 * f->cap : 64;
        int32_t *nd = realloc(f->d, (size_t)cap * sizeof(int32_t));
        if (!nd) return -1;
        f->d = nd;
        int64_t *nr = realloc(f->r, (size_t)cap * sizeof(int64_t));
        if (!nr) return -1;
        f->r = nr;
        f->cap = cap;
    }
    f->d[f->size] = d, f->r[f->size] = row, f->size++;
    return 0;
}

static int range_one(const Tables *t, const uint8_t *q, Found *f, Seen *seen, int64_t budget)
{
    int64_t work = 0;
    for (int j = 0; j < t->m; j++) {
        uint32_t key = substring(q, t->start[j], t->len[j]);
        int top = f->radius / t->m < t->len[j] ? f->radius / t->m : t->len[j];
        for (int s = 0; s <= top; s++) {
            int64_t w = read_radius(t, j, key, s, q, seen, found_visit, f);
            if (w < 0) return -1;
            work += w;
            if (work > budget) return 0;
        }
    }
    return 1;
}

/* ---- queries over threads --------------------------------------------------------------------- */

typedef struct {
    const Tables *t;
    const uint8_t *queries;
    int64_t q0, q1, k, budget;
    int radius, mode; /* 0: knn, 1: range */
    int32_t *out_d;   /* knn: (nq, k) */
    int64_t *out_r;
    uint8_t *fallback; /* (nq,) 1 where the caller must scan */
    Found *found;      /* range: one per query */
    int failed;
} Work;

static void sort_found(Found *f)
{
    /* a bottom-up merge sort by (distance, row); without memory for it, insertion in place */
    int64_t n = f->size;
    if (n < 2) return;
    int32_t *d = malloc((size_t)n * sizeof(int32_t));
    int64_t *r = malloc((size_t)n * sizeof(int64_t));
    if (!d || !r) {
        free(d);
        free(r);
        for (int64_t i = 1; i < n; i++)
            for (int64_t j = i; j > 0 && worse(f->d[j - 1], f->r[j - 1], f->d[j], f->r[j]); j--) {
                int32_t td = f->d[j];
                int64_t tr = f->r[j];
                f->d[j] = f->d[j - 1], f->r[j] = f->r[j - 1], f->d[j - 1] = td, f->r[j - 1] = tr;
            }
        return;
    }
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                if (worse(f->d[a], f->r[a], f->d[b], f->r[b])) d[o] = f->d[b], r[o++] = f->r[b++];
                else d[o] = f->d[a], r[o++] = f->r[a++];
            while (a < mid) d[o] = f->d[a], r[o++] = f->r[a++];
            while (b < hi) d[o] = f->d[b], r[o++] = f->r[b++];
        }
        memcpy(f->d, d, (size_t)n * sizeof(int32_t));
        memcpy(f->r, r, (size_t)n * sizeof(int64_t));
    }
    free(d);
    free(r);
}

static void run_queries(Work *w)
{
    Seen seen;
    Heap h = {w->k, 0, NULL, NULL};
    if (seen_init(&seen, w->t->n) < 0) goto oom;
    if (w->mode == 0) {
        h.d = malloc((size_t)w->k * sizeof(int32_t));
        h.r = malloc((size_t)w->k * sizeof(int64_t));
        if (!h.d || !h.r) goto oom;
    }
    for (int64_t qi = w->q0; qi < w->q1; qi++) {
        const uint8_t *q = w->queries + (size_t)qi * w->t->cs;
        int done;
        if (w->mode == 0) {
            done = knn_one(w->t, q, &h, &seen, w->budget);
            if (done > 0) {
                /* heap to ascending (distance, row), padded */
                int64_t size = h.size;
                while (h.size > 1) {
                    int64_t last = --h.size;
                    int32_t td = h.d[0];
                    int64_t tr = h.r[0];
                    h.d[0] = h.d[last], h.r[0] = h.r[last], h.d[last] = td, h.r[last] = tr;
                    heap_sift_down(&h, 0);
                }
                int32_t *od = w->out_d + qi * w->k;
                int64_t *orow = w->out_r + qi * w->k;
                for (int64_t i = 0; i < w->k; i++) {
                    od[i] = i < size ? h.d[i] : INT32_MAX;
                    orow[i] = i < size ? h.r[i] : -1;
                }
            }
        } else {
            Found *f = &w->found[qi];
            f->radius = w->radius;
            done = range_one(w->t, q, f, &seen, w->budget);
            if (done > 0) sort_found(f);
            else f->size = 0; /* over budget: the caller scans this query */
        }
        seen_clear(&seen);
        if (done < 0) goto oom;
        w->fallback[qi] = done == 0;
    }
    seen_free(&seen);
    free(h.d);
    free(h.r);
    return;
oom:
    w->failed = 1;
    seen_free(&seen);
    free(h.d);
    free(h.r);
}

#if MIH_THREADS
static void *thread_main(void *arg)
{
    run_queries(arg);
    return NULL;
}
#endif

static int run_all(Work *proto, int64_t nq, int threads)
{
    if (threads > nq) threads = (int)(nq > 0 ? nq : 1);
    Work *works = calloc((size_t)threads, sizeof(Work));
    if (!works) return -1;
    for (int i = 0; i < threads; i++) {
        works[i] = *proto;
        works[i].q0 = nq * i / threads;
        works[i].q1 = nq * (i + 1) / threads;
    }
#if MIH_THREADS
    pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
    int *started = calloc((size_t)threads, sizeof(int));
    if (!ids || !started) threads = 1;
    for (int i = 1; i < threads; i++)
        started[i] = pthread_create(&ids[i], NULL, thread_main, &works[i]) == 0;
    run_queries(&works[0]);
    for (int i = 1; i < threads; i++) {
        if (started[i]) pthread_join(ids[i], NULL);
        else run_queries(&works[i]);
    }
    free(ids);
    free(started);
#else
    for (int i = 0; i < threads; i++) run_queries(&works[i]);
#endif
    int failed = 0;
    for (int i = 0; i < threads; i++) failed |= works[i].failed;
    free(works);
    return failed ? -1 : 0;
}

/* ---- Python bindings.  hashsdk/mih.py checks the arguments; these checks only keep a wrong
 * call from reading or writing out of bounds. ---------------------------------------------- */

typedef struct {
    Py_buffer codes, start, len, offsets, base, rows, dead;
    int have_dead;
} Views;

static void release(Views *v)
{
    PyBuffer_Release(&v->codes);
    PyBuffer_Release(&v->start);
    PyBuffer_Release(&v->len);
    PyBuffer_Release(&v->offsets);
    PyBuffer_Release(&v->base);
    PyBuffer_Release(&v->rows);
    if (v->have_dead) PyBuffer_Release(&v->dead);
}

static int take(PyObject *o, Py_buffer *b, int writable, Py_ssize_t at_least, const char *what)
{
    if (PyObject_GetBuffer(o, b, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (b->len < at_least) {
        PyErr_Format(PyExc_ValueError, "%s: expected at least %zd bytes, got %zd", what,
                     at_least, b->len);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* Parses (codes, n, cs, start, len, offsets, base, rows, dead-or-None) into t; offsets and
 * rows writable when building. */
static int tables_from(PyObject *const objs[9], Views *v, Tables *t, int writable)
{
    memset(v, 0, sizeof(*v));
    Py_ssize_t n = PyLong_AsSsize_t(objs[1]), cs = PyLong_AsSsize_t(objs[2]);
    if (PyErr_Occurred()) return -1;
    if (take(objs[3], &v->start, 0, 0, "start") < 0) return -1;
    int m = (int)(v->start.len / (Py_ssize_t)sizeof(int32_t));
    if (m < 1 || m > 64) {
        PyBuffer_Release(&v->start);
        PyErr_SetString(PyExc_ValueError, "tables: expected 1 to 64 substrings");
        return -1;
    }
    if (take(objs[0], &v->codes, 0, n * cs, "codes") < 0) goto fail_start;
    if (take(objs[4], &v->len, 0, m * (Py_ssize_t)sizeof(int32_t), "len") < 0) goto fail_codes;
    if (take(objs[6], &v->base, 0, (m + 1) * (Py_ssize_t)sizeof(int64_t), "base") < 0)
        goto fail_len;
    const int32_t *start = v->start.buf, *len = v->len.buf;
    const int64_t *base = v->base.buf;
    for (int j = 0; j < m; j++)
        if (len[j] < 1 || len[j] > MIH_MAX_LEN || start[j] < 0 ||
            start[j] + len[j] > cs * 8 || base[j + 1] - base[j] != (1ll << len[j]) + 1) {
            PyErr_Format(PyExc_ValueError, "tables: bad substring %d", j);
            goto fail_base;
        }
    if (take(objs[5], &v->offsets, writable, base[m] * (Py_ssize_t)sizeof(uint32_t),
             "offsets") < 0)
        goto fail_base;
    if (take(objs[7], &v->rows, writable, (Py_ssize_t)m * n * (Py_ssize_t)sizeof(uint32_t),
             "rows") < 0)
        goto fail_offsets;
    if (objs[8] != Py_None) {
        if (take(objs[8], &v->dead, 0, (n + 7) / 8, "dead") < 0) goto fail_rows;
        v->have_dead = 1;
    }
    *t = (Tables){m, start, len, v->offsets.buf, base, v->rows.buf, n, v->codes.buf,
                  (size_t)cs, v->have_dead ? v->dead.buf : NULL};
    return 0;
fail_rows:
    PyBuffer_Release(&v->rows);
fail_offsets:
    PyBuffer_Release(&v->offsets);
fail_base:
    PyBuffer_Release(&v->base);
fail_len:
    PyBuffer_Release(&v->len);
fail_codes:
    PyBuffer_Release(&v->codes);
fail_start:
    PyBuffer_Release(&v->start);
    return -1;
}

PyDoc_STRVAR(build_doc,
             "build(codes, n, code_size, start, len, offsets, base, rows)\n\n"
             "Fills the tables: offsets (uint32, base[m] entries; table j's 2^len[j] + 1 at\n"
             "base[j]) and rows (uint32, m * n; table j's at j * n), rows ascending in a bucket.");

static PyObject *py_build(PyObject *self, PyObject *args)
{
    PyObject *objs[9];
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4],
                          &objs[5], &objs[6], &objs[7]))
        return NULL;
    objs[8] = Py_None;
    Views v;
    Tables t;
    if (tables_from(objs, &v, &t, 1) < 0) return NULL;
    uint32_t *offsets = v.offsets.buf, *rows = v.rows.buf;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int j = 0; j < t.m && !failed; j++) {
        uint32_t *off = offsets + t.base[j], *out = rows + (size_t)j * t.n;
        size_t buckets = (size_t)1 << t.len[j];
        uint32_t *cursor = malloc(buckets * sizeof(uint32_t));
        if (!cursor) {
            failed = 1;
            break;
        }
        memset(off, 0, (buckets + 1) * sizeof(uint32_t));
        for (int64_t r = 0; r < t.n; r++)
            off[substring(t.codes + (size_t)r * t.cs, t.start[j], t.len[j]) + 1]++;
        for (size_t b = 0; b < buckets; b++) off[b + 1] += off[b];
        memcpy(cursor, off, buckets * sizeof(uint32_t));
        for (int64_t r = 0; r < t.n; r++)
            out[cursor[substring(t.codes + (size_t)r * t.cs, t.start[j], t.len[j])]++] =
                (uint32_t)r;
        free(cursor);
    }
    Py_END_ALLOW_THREADS
    release(&v);
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(knn_doc,
             "knn(queries, nq, codes, n, code_size, start, len, offsets, base, rows, dead, k,\n"
             "    budget, threads, out_d, out_rows, fallback)\n\n"
             "Exact top-k by (distance, row) of each query among the tables' n rows, into\n"
             "out_d (int32, nq*k) and out_rows (int64, nq*k); fallback (uint8, nq) is set where a\n"
             "query went over its budget: its outputs are not written.");

static PyObject *py_knn(PyObject *self, PyObject *args)
{
    PyObject *qo, *objs[9], *odo, *oro, *fbo;
    Py_ssize_t nq, k, budget;
    int threads;
    if (!PyArg_ParseTuple(args, "OnOOOOOOOOOnniOOO", &qo, &nq, &objs[0], &objs[1], &objs[2],
                          &objs[3], &objs[4], &objs[5], &objs[6], &objs[7], &objs[8], &k, &budget,
                          &threads, &odo, &oro, &fbo))
        return NULL;
    if (k < 1 || nq < 0 || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "knn: expected k >= 1, nq >= 0, threads >= 1");
        return NULL;
    }
    Views v;
    Tables t;
    if (tables_from(objs, &v, &t, 0) < 0) return NULL;
    Py_buffer q, od, orow, fb;
    if (take(qo, &q, 0, nq * (Py_ssize_t)t.cs, "queries") < 0) goto fail_tables;
    if (take(odo, &od, 1, nq * k * (Py_ssize_t)sizeof(int32_t), "out_d") < 0) goto fail_q;
    if (take(oro, &orow, 1, nq * k * (Py_ssize_t)sizeof(int64_t), "out_rows") < 0) goto fail_od;
    if (take(fbo, &fb, 1, nq, "fallback") < 0) goto fail_orow;
    Work proto = {&t, q.buf, 0, 0, k, budget, 0, 0, od.buf, orow.buf, fb.buf, NULL, 0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_all(&proto, nq, threads);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&fb);
    PyBuffer_Release(&orow);
    PyBuffer_Release(&od);
    PyBuffer_Release(&q);
    release(&v);
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_orow:
    PyBuffer_Release(&orow);
fail_od:
    PyBuffer_Release(&od);
fail_q:
    PyBuffer_Release(&q);
fail_tables:
    release(&v);
    return NULL;
}

PyDoc_STRVAR(range_doc,
             "range_search(queries, nq, codes, n, code_size, start, len, offsets, base, rows,\n"
             "             dead, radius, budget, threads, fallback)\n"
             "-> (lims bytes of int64 (nq+1), distances bytes of int32, rows bytes of int64)\n\n"
             "Every row within radius (inclusive), each query's sorted by (distance, row);\n"
             "queries over budget (fallback set) get no results.");

static PyObject *py_range(PyObject *self, PyObject *args)
{
    PyObject *qo, *objs[9], *fbo;
    Py_ssize_t nq, budget;
    int radius, threads;
    if (!PyArg_ParseTuple(args, "OnOOOOOOOOOiniO", &qo, &nq, &objs[0], &objs[1], &objs[2],
                          &objs[3], &objs[4], &objs[5], &objs[6], &objs[7], &objs[8], &radius,
                          &budget, &threads, &fbo))
        return NULL;
    if (radius < 0 || nq < 0 || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "range_search: expected radius, nq >= 0, threads >= 1");
        return NULL;
    }
    Views v;
    Tables t;
    if (tables_from(objs, &v, &t, 0) < 0) return NULL;
    Py_buffer q, fb;
    PyObject *out = NULL;
    if (take(qo, &q, 0, nq * (Py_ssize_t)t.cs, "queries") < 0) goto done_tables;
    if (take(fbo, &fb, 1, nq, "fallback") < 0) goto done_q;
    Found *found = calloc((size_t)(nq > 0 ? nq : 1), sizeof(Found));
    if (!found) {
        PyErr_NoMemory();
        goto done_fb;
    }
    Work proto = {&t, q.buf, 0, 0, 0, budget, radius, 1, NULL, NULL, fb.buf, found, 0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_all(&proto, nq, threads);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_NoMemory();
    } else {
        Py_ssize_t total = 0;
        for (Py_ssize_t i = 0; i < nq; i++) total += found[i].size;
        PyObject *lims = PyBytes_FromStringAndSize(NULL, (nq + 1) * (Py_ssize_t)sizeof(int64_t));
        PyObject *dist = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(int32_t));
        PyObject *rows = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(int64_t));
        if (lims && dist && rows) {
            int64_t *l = (int64_t *)PyBytes_AS_STRING(lims), at = 0;
            int32_t *d = (int32_t *)PyBytes_AS_STRING(dist);
            int64_t *r = (int64_t *)PyBytes_AS_STRING(rows);
            for (Py_ssize_t i = 0; i < nq; i++) {
                l[i] = at;
                memcpy(d + at, found[i].d, (size_t)found[i].size * sizeof(int32_t));
                memcpy(r + at, found[i].r, (size_t)found[i].size * sizeof(int64_t));
                at += found[i].size;
            }
            l[nq] = at;
            out = PyTuple_Pack(3, lims, dist, rows);
        }
        Py_XDECREF(lims);
        Py_XDECREF(dist);
        Py_XDECREF(rows);
    }
    for (Py_ssize_t i = 0; i < nq; i++) {
        free(found[i].d);
        free(found[i].r);
    }
    free(found);
done_fb:
    PyBuffer_Release(&fb);
done_q:
    PyBuffer_Release(&q);
done_tables:
    release(&v);
    return out;
}

static PyMethodDef methods[] = {
    {"build", py_build, METH_VARARGS, build_doc},
    {"knn", py_knn, METH_VARARGS, knn_doc},
    {"range_search", py_range, METH_VARARGS, range_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mih", "Exact multi-index hashing over bit-packed codes.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__mih(void)
{
    return PyModule_Create(&module);
}
