// SPDX-License-Identifier: GPL-2.0-only
/*
 * Batches of pages for the kdump writers: read, zero-tested and compressed in one call each.
 *
 * A kdump-compressed file holds every page compressed on its own (docs/kdump-compressed.md
 * §6), so a Python writer would make one codec call per page: at a few microseconds of
 * interpreter work per call, with the GIL taken back between pages, that is what limited
 * lzo and snappy output (their compression of a page takes about as long as the call
 * around it).  compress_pages() compresses a whole batch of pages in one call, with the GIL
 * released for all of it, so compression threads run truly in parallel.
 *
 * encode_runs() does a whole batch of an ELF input in one call: it reads the batch's runs
 * of consecutive pages with one pread() each (from /proc/vmcore: it maps the file and works
 * on the pages in the mapping, struct reader), finds the zero pages and compresses the
 * others.  Done from Python, a batch took about twenty calls that each gave up and took
 * back the GIL (one per run read, the zero test, the codec, numpy's small steps); with the
 * writing thread and the other encoder threads wanting it too, every one was a handoff, and
 * the threads spent a third of a 64 GiB run waiting for one another.  It reads and stores
 * 64 pages at a time, so a thread holds a batch's stored form but not all its pages.
 * Uncompressed kdump output goes the same way with the codec 'raw': its pages are packed
 * without the zero pages, in a thread, where views of the read batch cost the writing
 * thread a slice per run of kept pages; and with the codec 'none' where only the zero test
 * is wanted and nothing is stored: the ELF writer's zero pass and an uncompressed
 * --dry-run.
 *
 * Per page it produces exactly what the page would get alone, as makedumpfile and crash
 * expect: zlib level 1 zlib-wrapped (compress2()), lzo1x_1, raw snappy, zstd level 1 one
 * frame with the content size.  A page whose compressed form is not smaller than the page
 * is stored raw; the caller sees that as a size equal to the page size.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lzo/lzo1x.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

/*
 * CODEC_RAW stores every page as it is: the uncompressed kdump writer's pages, read,
 * zero-tested and packed back to back in the same call as the compressed ones.
 * CODEC_NONE stores nothing: a page's size only says whether it is a zero page (0) or not
 * (the page size), for the passes that only zero-test (an uncompressed --dry-run, the ELF
 * writer's zero pass).
 */
enum codec { CODEC_ZLIB, CODEC_LZO, CODEC_SNAPPY, CODEC_ZSTD, CODEC_RAW, CODEC_NONE };

/*
 * Pages encode_runs() reads before it stores them: 256 KiB of 4 KiB pages per thread, not a
 * whole batch (2 MiB), and still few reads split at a chunk's end.
 */
#define READ_CHUNK_PAGES 64

/* One batch's codec state, made and freed by the calling thread: nothing is shared. */
struct coder {
	enum codec codec;
	size_t page_size;
	size_t bound;		/* worst-case compressed size of one page */
	void *lzo_wrkmem;
	z_stream zs;
	int zs_live;
	ZSTD_CCtx *zc;
};

static int coder_init(struct coder *c, enum codec codec, size_t page_size)
{
	memset(c, 0, sizeof(*c));
	c->codec = codec;
	c->page_size = page_size;
	switch (codec) {
	case CODEC_ZLIB:
		if (deflateInit(&c->zs, 1) != Z_OK)
			return -1;
		c->zs_live = 1;
		c->bound = deflateBound(&c->zs, page_size);
		return 0;
	case CODEC_LZO:
		c->lzo_wrkmem = malloc(LZO1X_1_MEM_COMPRESS);
		/* lzo1x.h: at most 1/16 growth plus 64 + 3 bytes */
		c->bound = page_size + page_size / 16 + 64 + 3;
		return c->lzo_wrkmem ? 0 : -1;
	case CODEC_SNAPPY:
		c->bound = snappy_max_compressed_length(page_size);
		return 0;
	case CODEC_ZSTD:
		c->zc = ZSTD_createCCtx();
		c->bound = ZSTD_compressBound(page_size);
		return c->zc ? 0 : -1;
	case CODEC_RAW:
		c->bound = page_size;
		return 0;
	case CODEC_NONE:
		return 0;
	}
	return -1;
}

static void coder_free(struct coder *c)
{
	if (c->zs_live)
		deflateEnd(&c->zs);
	free(c->lzo_wrkmem);
	ZSTD_freeCCtx(c->zc);
}

/*
 * Compress one page into dst (capacity c->bound): the compressed size, or 0 on failure.
 * CODEC_RAW writes nothing and says the page did not shrink, so it is copied as it is.
 */
static size_t coder_page(struct coder *c, const unsigned char *src, unsigned char *dst)
{
	size_t n;

	switch (c->codec) {
	case CODEC_ZLIB:
		/* deflateReset keeps the stream's tables: the bytes of compress2(level 1) */
		if (deflateReset(&c->zs) != Z_OK)
			return 0;
		c->zs.next_in = (Bytef *)src;
		c->zs.avail_in = (uInt)c->page_size;
		c->zs.next_out = dst;
		c->zs.avail_out = (uInt)c->bound;
		if (deflate(&c->zs, Z_FINISH) != Z_STREAM_END)
			return 0;
		return c->bound - c->zs.avail_out;
	case CODEC_LZO: {
		lzo_uint out = 0;

		if (lzo1x_1_compress(src, c->page_size, dst, &out, c->lzo_wrkmem) != LZO_E_OK)
			return 0;
		return out;
	}
	case CODEC_SNAPPY:
		n = c->bound;
		if (snappy_compress((const char *)src, c->page_size, (char *)dst, &n) != SNAPPY_OK)
			return 0;
		return n;
	case CODEC_ZSTD:
		n = ZSTD_compressCCtx(c->zc, dst, c->bound, src, c->page_size, 1);
		return ZSTD_isError(n) ? 0 : n;
	case CODEC_RAW:
	case CODEC_NONE:
		return c->page_size;
	}
	return 0;
}

static int codec_of(const char *name, enum codec *codec)
{
	static const struct {
		const char *name;
		enum codec codec;
	} names[] = {
		{ "zlib", CODEC_ZLIB }, { "lzo", CODEC_LZO },
		{ "snappy", CODEC_SNAPPY }, { "zstd", CODEC_ZSTD },
		{ "raw", CODEC_RAW }, { "none", CODEC_NONE },
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i].name) == 0) {
			*codec = names[i].codec;
			return 0;
		}
	}
	return -1;
}

/* Whether every byte of the page is zero: 8-byte words, most non-zero pages decided by the
 * first one. */
static int page_is_zero(const unsigned char *p, size_t size)
{
	uint64_t acc = 0, w;
	size_t i, j;

	for (i = 0; i < size; i += 256) {
		for (j = i; j < i + 256 && j < size; j += 8) {
			memcpy(&w, p + j, 8);
			acc |= w;
		}
		if (acc)
			return 0;
	}
	return 1;
}

/*
 * Store page rows[i] of pages (page i when rows is NULL) for each of the n into out, back
 * to back: nothing for a zero page when find_zero (size 0), else compressed, or raw when
 * that is not smaller (size page_size).  out has room for (n - 1) * page_size + bound bytes.
 * Returns the bytes used, or -1 when a codec failed.
 */
static Py_ssize_t store_pages(struct coder *c, const unsigned char *pages, const int64_t *rows,
			      Py_ssize_t n, int find_zero, unsigned char *out, int64_t *sizes)
{
	size_t ps = c->page_size, pos = 0, len;
	Py_ssize_t i;

	for (i = 0; i < n; i++) {
		const unsigned char *src = pages + (size_t)(rows ? rows[i] : i) * ps;

		if (find_zero && page_is_zero(src, ps)) {
			sizes[i] = 0;
			continue;
		}
		if (c->codec == CODEC_NONE) {
			sizes[i] = (int64_t)ps;
			continue;
		}
		len = coder_page(c, src, out + pos);
		if (len == 0)
			return -1;
		if (len >= ps) {
			memcpy(out + pos, src, ps);
			len = ps;
		}
		sizes[i] = (int64_t)len;
		pos += len;
	}
	return (Py_ssize_t)pos;
}

/* Grow a bytearray to at least need bytes; 0 on success. */
static int reserve(PyObject *buf, Py_ssize_t need)
{
	if (PyByteArray_GET_SIZE(buf) >= need)
		return 0;
	return PyByteArray_Resize(buf, need);
}

PyDoc_STRVAR(compress_pages_doc,
"compress_pages(codec, pages, rows, page_size, scratch) -> (data, sizes)\n\n"
"Compress page rows[i] of the C-contiguous buffer *pages* (whole pages of page_size\n"
"bytes) with *codec* ('zlib', 'lzo', 'snappy' or 'zstd'), each page on its own, or\n"
"copy them as they are ('raw').\n"
"*rows* is a buffer of native int64.  *data* holds the stored pages back to back,\n"
"*sizes* (native int64 per row) their lengths; a length equal to page_size means the\n"
"page is stored raw because compressing did not make it smaller.  *scratch* is a\n"
"bytearray the pages are compressed into (grown as needed): give each thread its own\n"
"and keep it, so that a batch costs one allocation of its exact size.");

static PyObject *compress_pages(PyObject *self, PyObject *args)
{
	const char *name;
	Py_buffer pages, rows, work;
	Py_ssize_t page_size, n, npages, i, need, used = -1;
	PyObject *scratch, *sizes = NULL, *ret = NULL;
	struct coder c;
	enum codec codec;
	const int64_t *row;

	(void)self;
	if (!PyArg_ParseTuple(args, "sy*y*nO!", &name, &pages, &rows, &page_size,
			      &PyByteArray_Type, &scratch))
		return NULL;
	if (codec_of(name, &codec) || codec == CODEC_NONE) {
		PyErr_Format(PyExc_ValueError, "unknown codec %s", name);
		goto release;
	}
	if (page_size <= 0 || pages.len % page_size ||
	    rows.len % (Py_ssize_t)sizeof(int64_t)) {
		PyErr_SetString(PyExc_ValueError, "pages or rows are not whole items");
		goto release;
	}
	npages = pages.len / page_size;
	n = rows.len / (Py_ssize_t)sizeof(int64_t);
	row = rows.buf;
	for (i = 0; i < n; i++) {
		if (row[i] < 0 || row[i] >= npages) {
			PyErr_Format(PyExc_IndexError, "row %lld outside %zd pages",
				     (long long)row[i], npages);
			goto release;
		}
	}
	if (coder_init(&c, codec, (size_t)page_size)) {
		PyErr_NoMemory();
		goto release;
	}
	/* every page takes at most page_size once stored; the last one needs room to be tried */
	need = n ? (n - 1) * page_size + (Py_ssize_t)c.bound : 0;
	if (reserve(scratch, need))
		goto free_coder;
	/* the export keeps scratch from being resized while the GIL is released */
	if (PyObject_GetBuffer(scratch, &work, PyBUF_WRITABLE))
		goto free_coder;
	sizes = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
	if (sizes) {
		Py_BEGIN_ALLOW_THREADS
		used = store_pages(&c, pages.buf, row, n, 0, work.buf,
				   (int64_t *)PyBytes_AS_STRING(sizes));
		Py_END_ALLOW_THREADS
		if (used < 0)
			PyErr_Format(PyExc_RuntimeError, "%s compression failed", name);
		else
			ret = Py_BuildValue("(y#O)", (const char *)work.buf, used, sizes);
	}
	PyBuffer_Release(&work);
free_coder:
	coder_free(&c);
	Py_XDECREF(sizes);
release:
	PyBuffer_Release(&pages);
	PyBuffer_Release(&rows);
	return ret;
}

/*
 * Read size bytes at offset into out: 0, or -1 at the end of the file (*err 0) or on an
 * error (*err its errno).
 */
static int read_exact(int fd, unsigned char *out, int64_t size, int64_t offset, int *err)
{
	int64_t done;
	ssize_t got;

	for (done = 0; done < size; done += got) {
		got = pread(fd, out + done, (size_t)(size - done), (off_t)(offset + done));
		if (got < 0 && errno == EINTR) {
			got = 0;
			continue;
		}
		if (got <= 0) {
			*err = got < 0 ? errno : 0;
			return -1;
		}
	}
	return 0;
}

/*
 * Where a call reads its runs from: the descriptor, by pread(), or through mappings of it.
 *
 * /proc/vmcore serves a read() page by page, each page through a mapping made and torn down
 * for it (x86: ioremap_cache() and iounmap() in copy_oldmem_page()), while its mmap() maps a
 * whole range of the old kernel's memory at once (Linux 3.11, commit 83086978c63a "vmcore:
 * support mmap() on /proc/vmcore", made for makedumpfile for that reason).  With map set, the
 * runs are read in MAP_WINDOW-byte windows of the file, each mapped once for all the runs in
 * it (a batch's runs come in file order): stored straight from the window (reader_view), or
 * copied out of it (reader_read) where a copy is what is stored.  Only for /proc/vmcore: a
 * regular file's mapping faults its pages in one at a time, and a file cut short under a
 * mapping raises SIGBUS where pread() returns short.  If mmap() fails, the rest is read by
 * pread().
 */
#define MAP_WINDOW ((int64_t)4 << 20)

struct reader {
	int fd;
	int map;		/* read through mappings (cleared when mmap() fails) */
	int64_t size;		/* the file's size: no window reaches past it */
	unsigned char *win;	/* the mapping of [lo, hi), or NULL */
	int64_t lo, hi;
};

static void reader_init(struct reader *rd, int fd, int map)
{
	struct stat st;

	memset(rd, 0, sizeof(*rd));
	rd->fd = fd;
	if (map && fstat(fd, &st) == 0 && st.st_size > 0) {
		rd->map = 1;
		rd->size = (int64_t)st.st_size;
	}
}

static void reader_unmap(struct reader *rd)
{
	if (rd->win)
		munmap(rd->win, (size_t)(rd->hi - rd->lo));
	rd->win = NULL;
}

/*
 * Map the window of the file that holds offset, unless it is the one mapped: 0, or -1 when
 * no window serves it (past the end of the file: pread() reports that; mmap() failed: the
 * reader stops mapping and the rest is read by pread()).
 */
static int reader_window(struct reader *rd, int64_t offset)
{
	int64_t lo, hi;
	void *p;

	if (rd->win && offset >= rd->lo && offset < rd->hi)
		return 0;
	lo = offset - offset % MAP_WINDOW;
	hi = rd->size - lo < MAP_WINDOW ? rd->size : lo + MAP_WINDOW;
	if (offset >= hi)
		return -1;
	reader_unmap(rd);
	p = mmap(NULL, (size_t)(hi - lo), PROT_READ, MAP_PRIVATE, rd->fd, (off_t)lo);
	if (p == MAP_FAILED) {
		rd->map = 0;
		return -1;
	}
	rd->win = p;
	rd->lo = lo;
	rd->hi = hi;
	return 0;
}

/*
 * The pages of [offset, offset + size) that the reader's window holds, without a copy:
 * *view points at offset in the mapping, and the return value is how many bytes from there
 * lie in the window, in whole pages of ps.  0 when the reader does not map, no window
 * serves offset, or less than a page of it lies in the window (a page across a window's
 * edge, where a run's offset is not page-aligned): read those with reader_read().
 */
static int64_t reader_view(struct reader *rd, int64_t offset, int64_t size, int64_t ps,
			   const unsigned char **view)
{
	int64_t n;

	if (!rd->map || reader_window(rd, offset))
		return 0;
	n = rd->hi - offset < size ? rd->hi - offset : size;
	*view = rd->win + (offset - rd->lo);
	return n - n % ps;
}

/* As read_exact(), through the reader's windows where it maps them. */
static int reader_read(struct reader *rd, unsigned char *out, int64_t size, int64_t offset,
		       int *err)
{
	int64_t n;

	while (rd->map && size > 0 && !reader_window(rd, offset)) {
		n = rd->hi - offset < size ? rd->hi - offset : size;
		memcpy(out, rd->win + (offset - rd->lo), (size_t)n);
		out += n;
		offset += n;
		size -= n;
	}
	return size > 0 ? read_exact(rd->fd, out, size, offset, err) : 0;
}

/* A call's runs of consecutive pages: run i is len[i] bytes at file offset off[i]. */
struct runs {
	const int64_t *off;
	const int64_t *len;
	Py_ssize_t n;
	int64_t total;		/* the bytes of all runs */
};

/*
 * Take the runs from the int64 buffers offs and lens and check them, on the arrays that are
 * then read and before anything is read: whole pages of page_size (a multiple of the 8-byte
 * words the zero test reads), offsets not negative, sizes that add up without overflow.
 * 0, or -1 with ValueError set.
 */
static int parse_runs(const Py_buffer *offs, const Py_buffer *lens, Py_ssize_t page_size,
		      struct runs *r)
{
	Py_ssize_t i;

	if (page_size <= 0 || page_size % 8 || offs->len % (Py_ssize_t)sizeof(int64_t) ||
	    lens->len != offs->len) {
		PyErr_SetString(PyExc_ValueError, "page size, offsets or sizes not usable");
		return -1;
	}
	r->off = offs->buf;
	r->len = lens->buf;
	r->n = offs->len / (Py_ssize_t)sizeof(int64_t);
	r->total = 0;
	for (i = 0; i < r->n; i++) {
		if (r->off[i] < 0 || r->len[i] <= 0 || r->len[i] % page_size ||
		    r->len[i] > PY_SSIZE_T_MAX / 2 - r->total) {
			PyErr_Format(PyExc_ValueError, "run %zd: %lld bytes at %lld", i,
				     (long long)r->len[i], (long long)r->off[i]);
			return -1;
		}
		r->total += r->len[i];
	}
	return 0;
}

/*
 * Store the bytes / page_size pages at src (store_pages) after the *page pages stored in out
 * before, *used bytes: 0, or -1 when a codec failed.
 */
static int store_more(struct coder *c, const unsigned char *src, int64_t bytes, int find_zero,
		      unsigned char *out, int64_t *sizes, Py_ssize_t *used, Py_ssize_t *page)
{
	Py_ssize_t n = (Py_ssize_t)(bytes / (int64_t)c->page_size), got;

	got = store_pages(c, src, NULL, n, find_zero, out + *used, sizes + *page);
	if (got < 0)
		return -1;
	*used += got;
	*page += n;
	return 0;
}

/*
 * Store the runs' pages in order.  Where the reader maps the file, pages are stored straight
 * from its window (reader_view): the zero test and the codec read them where they are, and
 * most zero tests decide on a page's first bytes.  The other pages are read into in (cap
 * bytes, whole pages) a chunk at a time and each chunk stored before the next is read: a
 * batch's pages need not all be in memory at once, only its stored form.  Returns the bytes
 * stored in out; -1 when a codec failed; 0 with *stop set to the run a read stopped in (the
 * end of the file or an error, *err).
 */
static Py_ssize_t read_and_store(struct coder *c, struct reader *rd, const struct runs *r,
				 int find_zero, unsigned char *in, int64_t cap, unsigned char *out,
				 int64_t *sizes, Py_ssize_t *stop, int *err)
{
	const int64_t *off = r->off, *len = r->len;
	int64_t ps = (int64_t)c->page_size, fill = 0, done, want;
	Py_ssize_t i, n = r->n, page = 0, used = 0;
	const unsigned char *view;

	*stop = -1;
	*err = 0;
	for (i = 0; i < n; i++) {
		for (done = 0; done < len[i]; done += want) {
			want = reader_view(rd, off[i] + done, len[i] - done, ps, &view);
			if (want) {
				/* the pages read into in come first */
				if (fill && store_more(c, in, fill, find_zero, out, sizes, &used,
						       &page))
					return -1;
				fill = 0;
				if (store_more(c, view, want, find_zero, out, sizes, &used, &page))
					return -1;
				continue;
			}
			want = len[i] - done < cap - fill ? len[i] - done : cap - fill;
			if (reader_read(rd, in + fill, want, off[i] + done, err)) {
				*stop = i;
				return 0;
			}
			fill += want;
			if (fill < cap && !(i == n - 1 && done + want == len[i]))
				continue;
			if (store_more(c, in, fill, find_zero, out, sizes, &used, &page))
				return -1;
			fill = 0;
		}
	}
	return used;
}

/*
 * CODEC_RAW: read the runs straight into out and close up the gaps of the zero pages there,
 * so each page is copied once, by the read, unless a zero page came before it.  Returns
 * and reports as read_and_store().
 */
static Py_ssize_t read_raw(struct reader *rd, const struct runs *r, int find_zero, int64_t ps,
			   unsigned char *out, int64_t *sizes, Py_ssize_t *stop, int *err)
{
	Py_ssize_t i, page = 0;
	int64_t used = 0, k;
	unsigned char *at;

	*stop = -1;
	*err = 0;
	for (i = 0; i < r->n; i++) {
		at = out + used;	/* room: used never passes the pages read before */
		if (reader_read(rd, at, r->len[i], r->off[i], err)) {
			*stop = i;
			return 0;
		}
		for (k = 0; k < r->len[i] / ps; k++, page++) {
			if (find_zero && page_is_zero(at + k * ps, (size_t)ps)) {
				sizes[page] = 0;
				continue;
			}
			if (out + used != at + k * ps)
				memmove(out + used, at + k * ps, (size_t)ps);
			sizes[page] = ps;
			used += ps;
		}
	}
	return (Py_ssize_t)used;
}

PyDoc_STRVAR(encode_runs_doc,
"encode_runs(codec, fd, mapped, offsets, sizes, page_size, find_zero, pagebuf, outbuf)\n"
"    -> (data, sizes, stop, errno)\n\n"
"Read sizes[i] bytes at file offset offsets[i] of descriptor *fd* for each i (whole\n"
"pages, back to back: the batch; through mappings of the file with *mapped*, for\n"
"/proc/vmcore only), then store each page: with find_zero, a page of zero\n"
"bytes gets size 0 and no data; the others are compressed with *codec* ('zlib', 'lzo',\n"
"'snappy', 'zstd'), each on its own, raw when that is not smaller, stored raw ('raw'),\n"
"or not stored at all ('none': no data, and the page size as each non-zero page's size).\n"
"*offsets* and *sizes* are buffers of native int64.  *data* holds the stored pages back\n"
"to back, *sizes* (native int64 per page) their lengths.  *pagebuf* (a chunk of at most\n"
"64 pages at a time; 'raw' does not use it) and *outbuf* (the whole batch's stored form)\n"
"are bytearrays the pages are read and stored into, grown as needed: give each thread its\n"
"own and keep them.  When the file ends early or a read fails, nothing is stored: *stop* is\n"
"the index of the run the read stopped in (-1 when all were read) and *errno* its error\n"
"(0 at the end of the file).");

static PyObject *encode_runs(PyObject *self, PyObject *args)
{
	const char *name;
	Py_buffer offs, lens, work, pagework;
	Py_ssize_t page_size, npages, stop = -1, used = 0;
	PyObject *pagebuf, *outbuf, *sizes = NULL, *ret = NULL;
	struct runs r;
	struct reader rd;
	int64_t chunk;
	int fd, mapped, find_zero, err = 0;
	struct coder c;
	enum codec codec;

	(void)self;
	if (!PyArg_ParseTuple(args, "sipy*y*npO!O!", &name, &fd, &mapped, &offs, &lens,
			      &page_size, &find_zero, &PyByteArray_Type, &pagebuf,
			      &PyByteArray_Type, &outbuf))
		return NULL;
	if (codec_of(name, &codec)) {
		PyErr_Format(PyExc_ValueError, "unknown codec %s", name);
		goto release;
	}
	if (parse_runs(&offs, &lens, page_size, &r))
		goto release;
	npages = (Py_ssize_t)(r.total / page_size);
	if (coder_init(&c, codec, (size_t)page_size)) {
		PyErr_NoMemory();
		goto release;
	}
	/* raw pages are read straight into outbuf (read_raw()): no chunk to read into */
	chunk = codec == CODEC_RAW ? 0 : READ_CHUNK_PAGES * (int64_t)page_size;
	if (r.total < chunk)
		chunk = r.total;
	if (reserve(pagebuf, (Py_ssize_t)chunk) ||
	    reserve(outbuf, npages && codec != CODEC_NONE ?
			    (npages - 1) * page_size + (Py_ssize_t)c.bound : 0))
		goto free_coder;
	/* the exports keep both from being resized while the GIL is released */
	if (PyObject_GetBuffer(pagebuf, &pagework, PyBUF_WRITABLE))
		goto free_coder;
	if (PyObject_GetBuffer(outbuf, &work, PyBUF_WRITABLE))
		goto release_pages;
	sizes = PyBytes_FromStringAndSize(NULL, npages * (Py_ssize_t)sizeof(int64_t));
	if (sizes) {
		Py_BEGIN_ALLOW_THREADS
		reader_init(&rd, fd, mapped);
		if (codec == CODEC_RAW)
			used = read_raw(&rd, &r, find_zero, page_size, work.buf,
					(int64_t *)PyBytes_AS_STRING(sizes), &stop, &err);
		else
			used = read_and_store(&c, &rd, &r, find_zero, pagework.buf, chunk,
					      work.buf, (int64_t *)PyBytes_AS_STRING(sizes),
					      &stop, &err);
		reader_unmap(&rd);
		Py_END_ALLOW_THREADS
		if (used < 0)
			PyErr_Format(PyExc_RuntimeError, "%s compression failed", name);
		else
			ret = Py_BuildValue("(y#Oni)", (const char *)work.buf,
					    stop < 0 ? used : 0, sizes, stop, err);
	}
	PyBuffer_Release(&work);
release_pages:
	PyBuffer_Release(&pagework);
free_coder:
	coder_free(&c);
	Py_XDECREF(sizes);
release:
	PyBuffer_Release(&offs);
	PyBuffer_Release(&lens);
	return ret;
}

static PyMethodDef methods[] = {
	{ "compress_pages", compress_pages, METH_VARARGS, compress_pages_doc },
	{ "encode_runs", encode_runs, METH_VARARGS, encode_runs_doc },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_pagecodec",
	"Batches of pages read, zero-tested and compressed for kdump-compressed files.", -1, methods,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pagecodec(void)
{
	if (lzo_init() != LZO_E_OK) {
		PyErr_SetString(PyExc_ImportError, "lzo_init() failed");
		return NULL;
	}
	return PyModule_Create(&module);
}
