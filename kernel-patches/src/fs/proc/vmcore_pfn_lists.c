// SPDX-License-Identifier: GPL-2.0
/*
 * /proc/vmcore_pfn_lists - classify the crashed kernel's struct pages
 *
 * In a kdump capture kernel, a dump filter hands in the table of the crashed
 * kernel's mem_map chunks and gets back runs of page frames to leave out of
 * the dump (free, page cache, user, hwpoison, offline), classified with this
 * kernel's own page-flag helpers instead of a userspace copy of them.
 *
 * That is only sound if the crashed kernel is this kernel: the first use
 * compares the crashed kernel's VMCOREINFO with this kernel's own (build id,
 * release, struct page layout, page flag and page type values) and every
 * scan is refused with -EXDEV when they differ.  Every chunk must lie inside
 * the crashed kernel's memory as /proc/vmcore describes it (the PT_LOADs of
 * the ELF core header).  Nothing here runs before or during the crash, only
 * in the capture kernel.
 *
 * See Documentation/admin-guide/kdump/vmcore_pfn_lists.rst.
 */

#define pr_fmt(fmt) "vmcore_pfn_lists: " fmt

#include <linux/capability.h>
#include <linux/crash_dump.h>
#include <linux/elf.h>
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/page-flags.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <uapi/linux/vmcore_pfn_lists.h>

/* Bounds on what the ELF core header may make us allocate or map. */
#define VPL_MAX_PHDRS		8192
#define VPL_MAX_NOTE_BYTES	SZ_1M
#define VPL_MAX_INFO_BYTES	SZ_16K
/* Runs are reported with a 32-bit count: larger compound orders are kept. */
#define VPL_MAX_ORDER		31
/* Runs staged on the stack before copy_to_user(). */
#define VPL_BATCH		32
/* struct pages examined between cond_resched() calls. */
#define VPL_RESCHED_PAGES	4096

/* Number of buddy orders, taken from the allocator's own free_area array. */
#define VPL_NR_ORDERS	(sizeof_field(struct zone, free_area) / sizeof(struct free_area))

struct vpl_range {
	u64 start;
	u64 end;
};

static DEFINE_MUTEX(vpl_lock);
static bool vpl_ready;
static int vpl_status;
static char vpl_reason[128];
static struct vpl_range *vpl_ranges;
static unsigned int vpl_nr_ranges;
static struct proc_dir_entry *vpl_entry;

/*
 * VMCOREINFO keys that decide how a struct page is read.  Both notes must
 * hold exactly the same set of these lines with the same values.
 */
static const char * const vpl_key_prefixes[] = {
	"OSRELEASE=",
	"BUILD-ID=",
	"PAGESIZE=",
	"SIZE(page)=",
	"OFFSET(page.",
	"OFFSET(folio.",
	"NUMBER(PG_",
	"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=",
	"NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=",
	"NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)=",
	"NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=",
	"NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)=",
	"NUMBER(PAGE_MAPPING_ANON)=",
	"NUMBER(PAGE_TYPE_",
	"NUMBER(PAGE_MAPCOUNT_RESERVE)=",
	"NUMBER(HUGETLB_PAGE_DTOR)=",
	"LENGTH(zone.free_area)=",
};

/* Keys without which the comparison proves nothing. */
static const char * const vpl_required_keys[] = {
	"OSRELEASE=",
	"PAGESIZE=",
	"SIZE(page)=",
	"OFFSET(page.flags)=",
	"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=",
};

static bool vpl_key_selected(const char *line, size_t len)
{
	size_t i, n;

	for (i = 0; i < ARRAY_SIZE(vpl_key_prefixes); i++) {
		n = strlen(vpl_key_prefixes[i]);
		if (len >= n && !memcmp(line, vpl_key_prefixes[i], n))
			return true;
	}
	return false;
}

/* Find the line whose key (text up to '=') equals that of @line. */
static const char *vpl_find_key(const char *buf, size_t size, const char *line,
				size_t len, size_t *found_len)
{
	const char *eq = memchr(line, '=', len);
	size_t klen = eq ? eq - line + 1 : len;
	const char *p = buf, *end = buf + size, *nl;

	while (p < end) {
		nl = memchr(p, '\n', end - p);
		if (!nl)
			nl = end;
		if ((size_t)(nl - p) >= klen && !memcmp(p, line, klen)) {
			*found_len = nl - p;
			return p;
		}
		p = nl + 1;
	}
	return NULL;
}

/*
 * Every selected line of @a must appear in @b with the same value.  On a
 * mismatch, describe it in vpl_reason and return false.
 */
static bool vpl_lines_match(const char *a, size_t asize, const char *b,
			    size_t bsize, const char *aname, const char *bname)
{
	const char *p = a, *end = a + asize, *nl, *q;
	size_t len, qlen;

	while (p < end) {
		nl = memchr(p, '\n', end - p);
		if (!nl)
			nl = end;
		len = nl - p;
		if (vpl_key_selected(p, len)) {
			q = vpl_find_key(b, bsize, p, len, &qlen);
			if (!q) {
				snprintf(vpl_reason, sizeof(vpl_reason),
					 "%.*s only in the %s kernel",
					 (int)min_t(size_t, len, 80), p, aname);
				return false;
			}
			if (qlen != len || memcmp(p, q, len)) {
				snprintf(vpl_reason, sizeof(vpl_reason),
					 "%s %.*s, %s %.*s", aname,
					 (int)min_t(size_t, len, 50), p, bname,
					 (int)min_t(size_t, qlen, 50), q);
				return false;
			}
		}
		p = nl + 1;
	}
	return true;
}

static int vpl_compare_vmcoreinfo(const char *old, size_t old_size,
				  const char *cur, size_t cur_size)
{
	size_t i, len;

	for (i = 0; i < ARRAY_SIZE(vpl_required_keys); i++) {
		if (!vpl_find_key(old, old_size, vpl_required_keys[i],
				  strlen(vpl_required_keys[i]), &len)) {
			snprintf(vpl_reason, sizeof(vpl_reason),
				 "crashed kernel's VMCOREINFO lacks %s",
				 vpl_required_keys[i]);
			return -EXDEV;
		}
	}
	if (!vpl_lines_match(old, old_size, cur, cur_size, "crashed", "running") ||
	    !vpl_lines_match(cur, cur_size, old, old_size, "running", "crashed"))
		return -EXDEV;
	return 0;
}

/*
 * Look for the VMCOREINFO note in a buffer of ELF notes; return a copy of
 * its descriptor, or NULL.
 */
static char *vpl_find_vmcoreinfo(const void *notes, size_t size, size_t *out_size)
{
	static const char name[] = VMCOREINFO_NOTE_NAME;
	size_t off = 0, namesz, descsz, step;
	const struct elf64_note *nh;
	char *copy;

	while (off + sizeof(*nh) <= size) {
		nh = notes + off;
		if (!nh->n_namesz && !nh->n_descsz)
			break;
		namesz = ALIGN((size_t)nh->n_namesz, 4);
		descsz = ALIGN((size_t)nh->n_descsz, 4);
		step = sizeof(*nh) + namesz + descsz;
		if (namesz > size || descsz > size || off + step > size)
			break;
		if (nh->n_namesz == sizeof(name) &&
		    !memcmp(notes + off + sizeof(*nh), name, sizeof(name))) {
			if (nh->n_descsz > VPL_MAX_INFO_BYTES)
				return NULL;
			copy = kmemdup(notes + off + sizeof(*nh) + namesz,
				       nh->n_descsz, GFP_KERNEL);
			if (copy)
				*out_size = nh->n_descsz;
			return copy;
		}
		off += step;
	}
	return NULL;
}

static int vpl_cmp_range(const void *a, const void *b)
{
	const struct vpl_range *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return 0;
}

/* Sort the old-memory ranges and merge the touching ones. */
static void vpl_merge_ranges(void)
{
	unsigned int i, n = 0;

	sort(vpl_ranges, vpl_nr_ranges, sizeof(*vpl_ranges), vpl_cmp_range, NULL);
	for (i = 0; i < vpl_nr_ranges; i++) {
		if (n && vpl_ranges[i].start <= vpl_ranges[n - 1].end)
			vpl_ranges[n - 1].end = max(vpl_ranges[n - 1].end,
						    vpl_ranges[i].end);
		else
			vpl_ranges[n++] = vpl_ranges[i];
	}
	vpl_nr_ranges = n;
}

/*
 * Read the ELF header that /proc/vmcore presents: its PT_LOAD ranges are the
 * crashed kernel's memory, and its (merged) PT_NOTE holds the crashed
 * kernel's VMCOREINFO.  vmcore_init() already validated the ELF core header
 * and forgets its address afterwards, so this is the only place left to get
 * them from, both built in and as a module.
 */
static int vpl_read_vmcore_headers(char **info, size_t *info_size)
{
	struct elf64_phdr *ph = NULL;
	struct elf64_hdr eh;
	unsigned int i, nr_loads = 0;
	struct file *file;
	void *notes;
	loff_t pos = 0;
	int ret = -ENODATA;

	file = filp_open("/proc/vmcore", O_RDONLY, 0);
	if (IS_ERR(file)) {
		snprintf(vpl_reason, sizeof(vpl_reason),
			 "cannot open /proc/vmcore (%ld)", PTR_ERR(file));
		return -ENODATA;
	}
	if (kernel_read(file, &eh, sizeof(eh), &pos) != sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_phentsize != sizeof(*ph) || !eh.e_phnum ||
	    eh.e_phnum > VPL_MAX_PHDRS) {
		snprintf(vpl_reason, sizeof(vpl_reason),
			 "unsupported /proc/vmcore ELF header");
		goto out;
	}
	ph = kvcalloc(eh.e_phnum, sizeof(*ph), GFP_KERNEL);
	if (!ph) {
		ret = -ENOMEM;
		goto out;
	}
	pos = eh.e_phoff;
	if (kernel_read(file, ph, eh.e_phnum * sizeof(*ph), &pos) !=
	    eh.e_phnum * sizeof(*ph)) {
		snprintf(vpl_reason, sizeof(vpl_reason),
			 "cannot read the /proc/vmcore program headers");
		goto out;
	}
	for (i = 0; i < eh.e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && ph[i].p_memsz)
			nr_loads++;
	vpl_ranges = kcalloc(max(nr_loads, 1U), sizeof(*vpl_ranges), GFP_KERNEL);
	if (!vpl_ranges) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || !ph[i].p_memsz ||
		    ph[i].p_paddr + ph[i].p_memsz < ph[i].p_paddr)
			continue;
		vpl_ranges[vpl_nr_ranges].start = ph[i].p_paddr;
		vpl_ranges[vpl_nr_ranges].end = ph[i].p_paddr + ph[i].p_memsz;
		vpl_nr_ranges++;
	}
	vpl_merge_ranges();

	for (i = 0; i < eh.e_phnum && !*info; i++) {
		if (ph[i].p_type != PT_NOTE || !ph[i].p_filesz ||
		    ph[i].p_filesz > VPL_MAX_NOTE_BYTES)
			continue;
		notes = kvmalloc(ph[i].p_filesz, GFP_KERNEL);
		if (!notes) {
			ret = -ENOMEM;
			goto out;
		}
		pos = ph[i].p_offset;
		if (kernel_read(file, notes, ph[i].p_filesz, &pos) == ph[i].p_filesz)
			*info = vpl_find_vmcoreinfo(notes, ph[i].p_filesz, info_size);
		kvfree(notes);
	}
	if (*info)
		ret = 0;
	else
		snprintf(vpl_reason, sizeof(vpl_reason),
			 "no VMCOREINFO note in /proc/vmcore");
out:
	kvfree(ph);
	filp_close(file, NULL);
	return ret;
}

/*
 * Decide once whether scans are possible.  Runs in the capture kernel at the
 * first open, never in the crashed kernel.
 */
static void vpl_setup(void)
{
	char *old = NULL, *cur = NULL;
	size_t old_size = 0, cur_size = 0;
	const void *note;

	mutex_lock(&vpl_lock);
	if (vpl_ready)
		goto unlock;

	vpl_status = vpl_read_vmcore_headers(&old, &old_size);
	if (vpl_status)
		goto done;

	/* This kernel's own note, filled in at boot by crash_save_vmcoreinfo_init(). */
	note = phys_to_virt(paddr_vmcoreinfo_note());
	cur = vpl_find_vmcoreinfo(note, VMCOREINFO_NOTE_SIZE, &cur_size);
	if (!cur) {
		snprintf(vpl_reason, sizeof(vpl_reason),
			 "running kernel has no VMCOREINFO");
		vpl_status = -ENODATA;
		goto done;
	}
	vpl_status = vpl_compare_vmcoreinfo(old, old_size, cur, cur_size);
done:
	if (vpl_status == -ENOMEM && !vpl_reason[0])
		snprintf(vpl_reason, sizeof(vpl_reason), "out of memory");
	if (vpl_status)
		pr_info("scans refused: %s\n", vpl_reason);
	kfree(old);
	kfree(cur);
	vpl_ready = true;
unlock:
	mutex_unlock(&vpl_lock);
}

/* Is [start, start + size) inside one range of the crashed kernel's memory? */
static bool vpl_in_old_memory(u64 start, u64 size)
{
	unsigned int lo = 0, hi = vpl_nr_ranges, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (vpl_ranges[mid].end <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < vpl_nr_ranges && vpl_ranges[lo].start <= start &&
	       size <= vpl_ranges[lo].end - start;
}

static int vpl_check_chunk(const struct vmcore_pfn_chunk *c, u64 prev_end)
{
	u64 bytes;

	if (!c->nr_pages || c->start_pfn < prev_end ||
	    c->start_pfn > (U64_MAX >> PAGE_SHIFT) - c->nr_pages ||
	    !IS_ALIGNED(c->mem_map_paddr, sizeof(unsigned long)))
		return -EINVAL;
	if (c->nr_pages > VMCORE_PFN_MAX_CHUNK_PAGES)
		return -E2BIG;
	bytes = c->nr_pages * sizeof(struct page);
	if (c->mem_map_paddr > U64_MAX - bytes ||
	    !vpl_in_old_memory(c->mem_map_paddr, bytes))
		return -ERANGE;
	return 0;
}

/* Validate the whole chunk table before any page is read. */
static int vpl_check_chunks(const struct vmcore_pfn_chunk __user *uchunks, u32 nr)
{
	struct vmcore_pfn_chunk c;
	u64 prev_end = 0;
	u32 i;
	int ret;

	for (i = 0; i < nr; i++) {
		if (copy_from_user(&c, uchunks + i, sizeof(c)))
			return -EFAULT;
		ret = vpl_check_chunk(&c, prev_end);
		if (ret)
			return ret;
		prev_end = c.start_pfn + c.nr_pages;
		if (!(i % 1024))
			cond_resched();
	}
	return 0;
}

/*
 * Classify one struct page of the crashed kernel, mirroring the dump levels
 * of makedumpfile: the first matching rule wins, and a compound page is
 * decided by its head for all its pages.  @p points into our mapping of the
 * chunk; @has_next says whether p[1] is mapped too.  Nothing here follows a
 * pointer stored in the page (they are the crashed kernel's addresses), and
 * no reference is taken: only the helpers that read the page's own words
 * (or p[1] for a head) are used, after PageTail() ruled out tail pages whose
 * helpers would chase compound_head.
 */
static u32 vpl_classify(struct page *p, u64 pfn, bool has_next, u32 dl, u64 *nr)
{
	unsigned int order = 0;
	bool slab, anon, cache, priv, huge = false;

	*nr = 1;
	/* Never initialised (or poisoned by a debug kernel): not ours to judge. */
	if (PagePoisoned(p) || PageTail(p))
		return VMCORE_PFN_KEEP;
	if (has_next && PageHead(p)) {
		order = compound_order(p);
		huge = PageHuge(p);
		if (order > VPL_MAX_ORDER || (pfn & ((1ULL << order) - 1)))
			order = 0;
	}
	slab = PageSlab(p);

	if ((dl & VMCORE_PFN_DL_FREE) && !slab && PageBuddy(p)) {
		/* The buddy order is kept in page->private (set_buddy_order()). */
		unsigned long bo = page_private(p);

		if (bo >= VPL_NR_ORDERS)
			return VMCORE_PFN_KEEP;
		*nr = 1ULL << bo;
		return VMCORE_PFN_FREE;
	}

	/*
	 * PG_swapcache and PG_swapbacked are tested as bits, as the dump level
	 * defines them: PageSwapCache() also depends on CONFIG_SWAP, and the
	 * page (not folio) form of the swapbacked helper is gone since 6.x.
	 */
	cache = PageLRU(p) || (test_bit(PG_swapcache, &p->flags) &&
			       test_bit(PG_swapbacked, &p->flags));
	anon = !slab && PageAnon(p);
	priv = PagePrivate(p);

	if ((dl & VMCORE_PFN_DL_CACHE) && cache && !priv && !anon) {
		*nr = 1ULL << order;
		return VMCORE_PFN_CACHE;
	}
	if ((dl & VMCORE_PFN_DL_CACHE_PRIVATE) && cache && !anon) {
		*nr = 1ULL << order;
		return priv ? VMCORE_PFN_CACHE_PRIVATE : VMCORE_PFN_CACHE;
	}
	if ((dl & VMCORE_PFN_DL_USER) && (anon || huge)) {
		*nr = 1ULL << order;
		return VMCORE_PFN_USER;
	}
	if (PageHWPoison(p)) {
		*nr = 1ULL << order;
		return VMCORE_PFN_HWPOISON;
	}
	if (!slab && PageOffline(p)) {
		*nr = 1ULL << order;
		return VMCORE_PFN_OFFLINE;
	}
	return VMCORE_PFN_KEEP;
}

struct vpl_out {
	struct vmcore_pfn_run __user *uruns;
	u32 max_runs;
	u32 nr_runs;		/* runs copied to userspace */
	u32 nr_batch;		/* runs staged in batch[] */
	bool have_cur;		/* cur is being extended */
	struct vmcore_pfn_run cur;
	struct vmcore_pfn_run batch[VPL_BATCH];
};

static int vpl_flush(struct vpl_out *o)
{
	if (!o->nr_batch)
		return 0;
	if (copy_to_user(o->uruns + o->nr_runs, o->batch,
			 o->nr_batch * sizeof(o->batch[0])))
		return -EFAULT;
	o->nr_runs += o->nr_batch;
	o->nr_batch = 0;
	return 0;
}

static int vpl_close_cur(struct vpl_out *o)
{
	if (!o->have_cur)
		return 0;
	o->batch[o->nr_batch++] = o->cur;
	o->have_cur = false;
	return o->nr_batch == VPL_BATCH ? vpl_flush(o) : 0;
}

/*
 * Add a run; merge it with the previous one when contiguous and of the same
 * class.  Returns 1 when the user buffer is full and the run was not added.
 */
static int vpl_add_run(struct vpl_out *o, u64 pfn, u64 nr, u32 class)
{
	int ret;

	if (o->have_cur && o->cur.class == class &&
	    o->cur.pfn + o->cur.count == pfn && o->cur.count <= U32_MAX - nr) {
		o->cur.count += nr;
		return 0;
	}
	if (o->nr_runs + o->nr_batch + o->have_cur >= o->max_runs)
		return 1;
	ret = vpl_close_cur(o);
	if (ret)
		return ret;
	o->cur.pfn = pfn;
	o->cur.count = nr;
	o->cur.class = class;
	o->have_cur = true;
	return 0;
}

static long vpl_scan(struct vmcore_pfn_scan __user *ureq)
{
	struct vmcore_pfn_scan req;
	struct vmcore_pfn_chunk c;
	const struct vmcore_pfn_chunk __user *uchunks;
	struct vpl_out *o;
	struct page *map;
	u64 pfn, idx, nr, end, examined = 0;
	u32 class, chunk;
	bool full = false;
	long ret;

	if (vpl_status)
		return vpl_status;
	if (copy_from_user(&req, ureq, sizeof(req)))
		return -EFAULT;
	if (req.size != sizeof(req) || req.flags || req.dump_level & ~VMCORE_PFN_DL_MASK ||
	    !req.nr_chunks || !req.max_runs || req.next_chunk > req.nr_chunks ||
	    !IS_ALIGNED(req.chunks, sizeof(u64)) || !IS_ALIGNED(req.runs, sizeof(u64)))
		return -EINVAL;
	if (req.nr_chunks > VMCORE_PFN_MAX_CHUNKS)
		return -E2BIG;
	uchunks = u64_to_user_ptr(req.chunks);
	ret = vpl_check_chunks(uchunks, req.nr_chunks);
	if (ret)
		return ret;

	o = kzalloc(sizeof(*o), GFP_KERNEL);
	if (!o)
		return -ENOMEM;
	o->uruns = u64_to_user_ptr(req.runs);
	o->max_runs = req.max_runs;
	memset(req.counts, 0, sizeof(req.counts));

	chunk = req.next_chunk;
	pfn = req.next_pfn;
	for (; chunk < req.nr_chunks && !full; chunk++) {
		if (copy_from_user(&c, uchunks + chunk, sizeof(c))) {
			ret = -EFAULT;
			goto out;
		}
		end = c.start_pfn + c.nr_pages;
		pfn = max(pfn, c.start_pfn);
		if (pfn >= end)
			continue;
		/* One mapping per chunk (from the resume point on). */
		map = memremap(c.mem_map_paddr + (pfn - c.start_pfn) * sizeof(struct page),
			       (end - pfn) * sizeof(struct page), MEMREMAP_WB);
		if (!map) {
			ret = -EIO;
			goto out;
		}
		idx = 0;
		while (pfn < end) {
			class = vpl_classify(map + idx, pfn, pfn + 1 < end,
					     req.dump_level, &nr);
			examined++;
			if (class != VMCORE_PFN_KEEP) {
				ret = vpl_add_run(o, pfn, nr, class);
				if (ret) {
					full = ret > 0;
					break;
				}
			} else {
				nr = 1;
			}
			req.counts[class] += nr;
			pfn += nr;
			idx += nr;
			if (!(examined % VPL_RESCHED_PAGES)) {
				cond_resched();
				if (fatal_signal_pending(current)) {
					ret = -EINTR;
					break;
				}
			}
		}
		memunmap(map);
		if (ret < 0)
			goto out;
		if (full)
			break;
	}
	ret = vpl_close_cur(o);
	if (!ret)
		ret = vpl_flush(o);
	if (ret)
		goto out;

	req.nr_runs = o->nr_runs;
	req.next_chunk = chunk;
	req.next_pfn = pfn;
	req.done = chunk >= req.nr_chunks;
	if (copy_to_user(ureq, &req, sizeof(req)))
		ret = -EFAULT;
out:
	kfree(o);
	return ret;
}

static long vpl_info(struct vmcore_pfn_info __user *uinfo)
{
	struct vmcore_pfn_info info = {
		.size = sizeof(info),
		.abi = VMCORE_PFN_LISTS_ABI,
		.status = vpl_status,
		.struct_page_size = sizeof(struct page),
		.max_chunks = VMCORE_PFN_MAX_CHUNKS,
		.max_chunk_pages = VMCORE_PFN_MAX_CHUNK_PAGES,
		.nr_old_ranges = vpl_nr_ranges,
	};

	strscpy(info.reason, vpl_reason, sizeof(info.reason));
	return copy_to_user(uinfo, &info, sizeof(info)) ? -EFAULT : 0;
}

static long vpl_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case VMCORE_PFN_IOC_INFO:
		return vpl_info((void __user *)arg);
	case VMCORE_PFN_IOC_SCAN:
		return vpl_scan((void __user *)arg);
	default:
		return -ENOTTY;
	}
}

static int vpl_open(struct inode *inode, struct file *file)
{
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	vpl_setup();
	return 0;
}

static const struct proc_ops vpl_proc_ops = {
	.proc_open		= vpl_open,
	.proc_ioctl		= vpl_ioctl,
	.proc_lseek		= noop_llseek,
};

static int __init vmcore_pfn_lists_init(void)
{
	if (!is_kdump_kernel())
		return -ENODEV;
	vpl_entry = proc_create("vmcore_pfn_lists", 0400, NULL, &vpl_proc_ops);
	return vpl_entry ? 0 : -ENOMEM;
}

static void __exit vmcore_pfn_lists_exit(void)
{
	proc_remove(vpl_entry);
	kfree(vpl_ranges);
}

module_init(vmcore_pfn_lists_init);
module_exit(vmcore_pfn_lists_exit);

MODULE_DESCRIPTION("Classify the crashed kernel's pages for kdump dump filters");
MODULE_LICENSE("GPL");
