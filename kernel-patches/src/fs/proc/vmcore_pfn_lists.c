// SPDX-License-Identifier: GPL-2.0
/*
 * /proc/vmcore_pfn_lists - classify the crashed kernel's struct pages
 *
 * In a kdump capture kernel, a dump filter hands in the table of the crashed
 * kernel's mem_map chunks and the page classes it asks about (free, page
 * cache, user, hwpoison, offline) and gets back runs of page frames of those
 * classes, classified with this kernel's own page-flag helpers instead of a
 * userspace copy of them.  Which classes to leave out of the dump is the
 * filter's decision.
 *
 * That is only sound if the crashed kernel is this kernel: the first open
 * compares the crashed kernel's VMCOREINFO with this kernel's own (build id,
 * release, struct page layout, page flag and page type values) and every
 * scan is refused with -EXDEV when they differ.  Every chunk must lie inside
 * the crashed kernel's memory as /proc/vmcore reads it and outside this
 * kernel's RAM.  Nothing here runs before or during the crash, only in the
 * capture kernel.
 *
 * See Documentation/admin-guide/kdump/vmcore_pfn_lists.rst.
 */

#define pr_fmt(fmt) "vmcore_pfn_lists: " fmt

#include <linux/capability.h>
#include <linux/cc_platform.h>
#include <linux/compat.h>
#include <linux/crash_dump.h>
#include <linux/elf.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/ioport.h>
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
#include <linux/vmcore_pfn_lists.h>

/* Bounds on what the crashed kernel's notes may make us allocate. */
#define VPL_MAX_INFO_BYTES	SZ_16K
/* Runs are reported with a 32-bit count: larger compound orders are kept. */
#define VPL_MAX_ORDER		31
/* Runs collected in struct vpl_state before copy_to_user(). */
#define VPL_RUN_BATCH		32
/* Chunks of the caller's table one call copies, checks and scans at most. */
#define VPL_CALL_CHUNKS		256
/* Struct pages one call examines at most (4 GiB of memory); the caller resumes. */
#define VPL_CALL_PAGES		(SZ_4G >> PAGE_SHIFT)

/*
 * The struct pages are classified in a copy, one page-sized buffer at a
 * time, never where a device could still be writing them.  The copy starts
 * past the beginning of the buffer so that no struct page in it is
 * page-aligned: compound_head() takes a page-aligned head whose page[1]
 * looks like a tail for a fake head of a hugetlb page with an optimised
 * vmemmap and returns the address stored in page[1], which would be the
 * crashed kernel's.  The last struct page copied is only there to be the
 * page[1] of the one before it.
 */
#define VPL_COPY_OFFSET		__alignof__(struct page)
#define VPL_COPY_PAGES		((PAGE_SIZE - VPL_COPY_OFFSET) / sizeof(struct page) - 1)

/* Number of buddy orders, taken from the allocator's own free_area array. */
#define VPL_NR_ORDERS	(sizeof_field(struct zone, free_area) / sizeof(struct free_area))

/* The request structures grow at their end; see the UAPI header. */
#define VPL_IOC(cmd)	((cmd) & ~IOCSIZE_MASK)
#define VPL_WANT(classes, class)	((classes) & BIT(class))

struct vpl_range {
	u64 start;
	u64 end;
};

/*
 * Set up once, at the first open that succeeds, under vpl_lock; read-only
 * afterwards.  A setup that fails for a reason that may pass (no memory, a
 * read error, a signal) leaves nothing behind and the next open tries again.
 */
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

/* Reads @len bytes at offset @off of a note segment; 0 or a negative errno. */
typedef int (*vpl_read_t)(void *src, void *buf, size_t len, u64 off);

struct vpl_buf {
	const void *data;
	size_t size;
};

static int vpl_read_buf(void *src, void *buf, size_t len, u64 off)
{
	const struct vpl_buf *b = src;

	if (off > b->size || len > b->size - off)
		return -EIO;
	memcpy(buf, b->data + off, len);
	return 0;
}

/*
 * Walk the ELF notes in [0, @size) of @src for the VMCOREINFO note and
 * return a NUL-terminated copy of its descriptor in *@info.  Only the note
 * headers and the one descriptor are read, so the note segment may be as
 * large as the machine's CPU count and device dumps make it.
 */
static int vpl_find_vmcoreinfo(vpl_read_t read, void *src, u64 size,
			       char **info, size_t *info_size)
{
	static const char name[] = VMCOREINFO_NOTE_NAME;
	char nbuf[sizeof(name)];
	struct elf64_note nh;
	u64 off = 0, namesz, descsz;
	char *copy;
	int ret;

	while (off <= size && size - off >= sizeof(nh)) {
		ret = read(src, &nh, sizeof(nh), off);
		if (ret)
			return ret;
		if (!nh.n_namesz && !nh.n_descsz)
			break;
		namesz = ALIGN((u64)nh.n_namesz, 4);
		descsz = ALIGN((u64)nh.n_descsz, 4);
		if (namesz + descsz > size - off - sizeof(nh))
			break;
		if (nh.n_namesz == sizeof(name)) {
			ret = read(src, nbuf, sizeof(nbuf), off + sizeof(nh));
			if (ret)
				return ret;
			if (!memcmp(nbuf, name, sizeof(name))) {
				if (nh.n_descsz > VPL_MAX_INFO_BYTES)
					break;
				copy = kmalloc(nh.n_descsz + 1, GFP_KERNEL);
				if (!copy)
					return -ENOMEM;
				ret = read(src, copy, nh.n_descsz,
					   off + sizeof(nh) + namesz);
				if (ret) {
					kfree(copy);
					return ret;
				}
				copy[nh.n_descsz] = '\0';
				*info = copy;
				*info_size = nh.n_descsz;
				return 0;
			}
		}
		off += sizeof(nh) + namesz + descsz;
	}
	snprintf(vpl_reason, sizeof(vpl_reason), "no VMCOREINFO note in /proc/vmcore");
	return -ENODATA;
}

static int vpl_cmp_range(const void *a, const void *b)
{
	const struct vpl_range *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return 0;
}

/* Sort the old-memory ranges and merge the touching ones; return how many remain. */
static unsigned int vpl_merge_ranges(struct vpl_range *r, unsigned int nr)
{
	unsigned int i, n = 0;

	sort(r, nr, sizeof(*r), vpl_cmp_range, NULL);
	for (i = 0; i < nr; i++) {
		if (n && r[i].start <= r[n - 1].end)
			r[n - 1].end = max(r[n - 1].end, r[i].end);
		else
			r[n++] = r[i];
	}
	return n;
}

/* Collects the old-memory ranges: counts them, and stores them while there is room. */
struct vpl_layout {
	struct vpl_range *ranges;
	unsigned int nr;
	unsigned int max;
};

static void vpl_add_range(struct vpl_layout *l, u64 start, u64 size)
{
	if (!size || start + size < start)
		return;
	if (l->nr < l->max) {
		l->ranges[l->nr].start = start;
		l->ranges[l->nr].end = start + size;
	}
	l->nr++;
}

#ifndef VMCORE_PFN_LISTS_OOT
static int vpl_vmcore_range(void *arg, u64 paddr, u64 size)
{
	vpl_add_range(arg, paddr, size);
	return 0;
}

/*
 * The crashed kernel's memory and VMCOREINFO as /proc/vmcore itself holds
 * them: the ranges it reads old memory from, and the ELF notes vmcore_init()
 * built from the ELF core header.
 */
static int vpl_load_oldmem(struct vpl_layout *l, char **info, size_t *info_size)
{
	struct vpl_buf notes;
	int ret;

	/* Count the ranges, then store them. */
	ret = vmcore_oldmem_layout(vpl_vmcore_range, l, &notes.data, &notes.size);
	if (!ret) {
		l->ranges = kcalloc(max(l->nr, 1U), sizeof(*l->ranges), GFP_KERNEL);
		if (!l->ranges)
			return -ENOMEM;
		l->max = l->nr;
		l->nr = 0;
		ret = vmcore_oldmem_layout(vpl_vmcore_range, l, &notes.data,
					   &notes.size);
	}
	if (ret) {
		snprintf(vpl_reason, sizeof(vpl_reason), "/proc/vmcore is not set up");
		return ret;
	}
	return vpl_find_vmcoreinfo(vpl_read_buf, &notes, notes.size, info, info_size);
}

/*
 * A driver that registered a vmcore callback (virtio-mem) tells /proc/vmcore
 * which page frames must not be read; the scan cannot ask it per page.
 */
static int vpl_check_callbacks(void)
{
	if (!vmcore_has_callbacks())
		return 0;
	pr_info_once("scans refused: a driver registered a vmcore callback\n");
	return -EOPNOTSUPP;
}
#else /* VMCORE_PFN_LISTS_OOT */
#include <linux/version.h>

struct vpl_file {
	struct file *file;
	u64 base;
};

static int vpl_read_file(void *src, void *buf, size_t len, u64 off)
{
	struct vpl_file *f = src;
	loff_t pos = f->base + off;
	ssize_t n;

	n = kernel_read(f->file, buf, len, &pos);
	if (n < 0)
		return n;
	return n == len ? 0 : -EIO;
}

/*
 * A module cannot reach fs/proc/vmcore.c's data, so it reads the ELF headers
 * that /proc/vmcore presents (on x86_64 their p_paddr is where vmcore reads
 * old memory from).  It opens vmcore in a private instance of procfs: a path
 * would be resolved in the opener's mount namespace and root, where
 * /proc/vmcore may be any file.
 */
static int vpl_load_oldmem(struct vpl_layout *l, char **info, size_t *info_size)
{
	struct file_system_type *type;
	struct elf64_phdr *ph = NULL;
	struct vfsmount *mnt;
	struct elf64_hdr eh;
	struct vpl_file f = { };
	unsigned int i;
	int ret;

	type = get_fs_type("proc");
	if (!type)
		return -ENODEV;
	mnt = kern_mount(type);
	/* What put_filesystem() does; it is not exported. */
	module_put(type->owner);
	if (IS_ERR(mnt))
		return PTR_ERR(mnt);
	f.file = file_open_root_mnt(mnt, "vmcore", O_RDONLY, 0);
	if (IS_ERR(f.file)) {
		ret = PTR_ERR(f.file);
		snprintf(vpl_reason, sizeof(vpl_reason),
			 "cannot open vmcore in procfs (%d)", ret);
		goto unmount;
	}
	ret = vpl_read_file(&f, &eh, sizeof(eh), 0);
	if (ret)
		goto close;
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_phentsize != sizeof(*ph) || !eh.e_phnum || eh.e_phnum == PN_XNUM) {
		snprintf(vpl_reason, sizeof(vpl_reason),
			 "unsupported /proc/vmcore ELF header");
		ret = -ENODATA;
		goto close;
	}
	ph = kvcalloc(eh.e_phnum, sizeof(*ph), GFP_KERNEL);
	if (!ph) {
		ret = -ENOMEM;
		goto close;
	}
	ret = vpl_read_file(&f, ph, eh.e_phnum * sizeof(*ph), eh.e_phoff);
	if (ret)
		goto close;
	for (i = 0; i < eh.e_phnum; i++)
		l->max += ph[i].p_type == PT_LOAD;
	l->ranges = kcalloc(max(l->max, 1U), sizeof(*l->ranges), GFP_KERNEL);
	if (!l->ranges) {
		ret = -ENOMEM;
		goto close;
	}
	for (i = 0; i < eh.e_phnum; i++)
		if (ph[i].p_type == PT_LOAD)
			vpl_add_range(l, ph[i].p_paddr, ph[i].p_memsz);
	ret = -ENODATA;
	for (i = 0; i < eh.e_phnum && ret == -ENODATA; i++) {
		if (ph[i].p_type != PT_NOTE)
			continue;
		f.base = ph[i].p_offset;
		ret = vpl_find_vmcoreinfo(vpl_read_file, &f, ph[i].p_filesz,
					  info, info_size);
	}
close:
	kvfree(ph);
	filp_close(f.file, NULL);
unmount:
	kern_unmount(mnt);
	return ret;
}

/* fs/proc/vmcore.c keeps its callbacks to itself: a module cannot see them. */
static int vpl_check_callbacks(void)
{
	return 0;
}

/*
 * vermagic ties a module to a kernel release, not to the configuration that
 * decides the struct page layout and page flag numbers it was compiled with:
 * compare those with the running kernel's own VMCOREINFO.
 */
static int vpl_check_module_layout(const char *cur, size_t cur_size)
{
	const struct {
		const char *key;
		long val;
	} want[] = {
		{ "SIZE(page)", sizeof(struct page) },
		{ "OFFSET(page.flags)", offsetof(struct page, flags) },
		{ "OFFSET(page._refcount)", offsetof(struct page, _refcount) },
		{ "OFFSET(page.mapping)", offsetof(struct page, mapping) },
		{ "OFFSET(page.lru)", offsetof(struct page, lru) },
		{ "OFFSET(page._mapcount)", offsetof(struct page, _mapcount) },
		{ "OFFSET(page.private)", offsetof(struct page, private) },
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 1, 0)
		/* 7.1 renamed the word that marks tail pages. */
		{ "OFFSET(page.compound_info)", offsetof(struct page, compound_info) },
#else
		{ "OFFSET(page.compound_head)", offsetof(struct page, compound_head) },
#endif
		{ "LENGTH(zone.free_area)", VPL_NR_ORDERS },
		{ "NUMBER(PG_lru)", PG_lru },
		{ "NUMBER(PG_private)", PG_private },
		{ "NUMBER(PG_swapcache)", PG_swapcache },
		{ "NUMBER(PG_swapbacked)", PG_swapbacked },
		{ "NUMBER(PG_head_mask)", PG_head_mask },
#ifdef CONFIG_MEMORY_FAILURE
		{ "NUMBER(PG_hwpoison)", PG_hwpoison },
#endif
	};
	const char *q;
	size_t i, len, qlen;
	char line[64];

	for (i = 0; i < ARRAY_SIZE(want); i++) {
		len = snprintf(line, sizeof(line), "%s=%ld", want[i].key, want[i].val);
		q = vpl_find_key(cur, cur_size, line, len, &qlen);
		if (!q || qlen != len || memcmp(q, line, len)) {
			snprintf(vpl_reason, sizeof(vpl_reason),
				 "module built for %s, running kernel has %.*s",
				 line, q ? (int)min_t(size_t, qlen, 50) : 4,
				 q ? q : "none");
			return -EXDEV;
		}
	}
	return 0;
}
#endif /* VMCORE_PFN_LISTS_OOT */

/* Verdicts about the two kernels, as opposed to failures that may pass. */
static bool vpl_permanent(int ret)
{
	return !ret || ret == -EXDEV || ret == -ENODATA || ret == -EOPNOTSUPP;
}

/*
 * Decide once whether scans are possible.  Runs in the capture kernel at an
 * open, never in the crashed kernel.
 */
static int vpl_setup(void)
{
	struct vpl_layout l = { };
	char *old = NULL, *cur = NULL;
	size_t old_size = 0, cur_size = 0;
	const void *note;
	int ret;

	ret = mutex_lock_killable(&vpl_lock);
	if (ret)
		return ret;
	if (vpl_ready)
		goto unlock;

	vpl_reason[0] = '\0';
	/* /proc/vmcore reads such memory through the decrypting path; this scan cannot. */
	if (cc_platform_has(CC_ATTR_MEM_ENCRYPT)) {
		snprintf(vpl_reason, sizeof(vpl_reason), "memory encryption is active");
		ret = -EOPNOTSUPP;
		goto done;
	}
	ret = vpl_load_oldmem(&l, &old, &old_size);
	if (ret)
		goto done;

	/* This kernel's own note, filled in at boot by crash_save_vmcoreinfo_init(). */
	note = phys_to_virt(paddr_vmcoreinfo_note());
	ret = vpl_find_vmcoreinfo(vpl_read_buf,
				  &(struct vpl_buf){ note, VMCOREINFO_NOTE_SIZE },
				  VMCOREINFO_NOTE_SIZE, &cur, &cur_size);
	if (ret) {
		snprintf(vpl_reason, sizeof(vpl_reason), "running kernel has no VMCOREINFO");
		goto done;
	}
#ifdef VMCORE_PFN_LISTS_OOT
	ret = vpl_check_module_layout(cur, cur_size);
	if (ret)
		goto done;
#endif
	ret = vpl_compare_vmcoreinfo(old, old_size, cur, cur_size);
done:
	if (vpl_permanent(ret)) {
		vpl_status = ret;
		vpl_ranges = l.ranges;
		vpl_nr_ranges = vpl_merge_ranges(l.ranges, min(l.nr, l.max));
		vpl_ready = true;
		if (ret)
			pr_info("scans refused: %s\n", vpl_reason);
		ret = 0;
	} else {
		pr_info("setup failed (%d), the next open tries again\n", ret);
		kfree(l.ranges);
	}
	kfree(old);
	kfree(cur);
unlock:
	mutex_unlock(&vpl_lock);
	return ret;
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

/*
 * One chunk, as copied from the caller: its struct pages must be old memory
 * that /proc/vmcore reads, and none of this kernel's RAM (a mapping of that
 * would leak the capture kernel's pages through the classes).
 */
static int vpl_check_chunk(const struct vmcore_pfn_chunk *c, u64 prev_end)
{
	u64 bytes;

	if (c->nr_pages > VMCORE_PFN_MAX_CHUNK_PAGES)
		return -E2BIG;
	if (!c->nr_pages || c->start_pfn < prev_end ||
	    c->start_pfn > (U64_MAX >> PAGE_SHIFT) - c->nr_pages ||
	    !IS_ALIGNED(c->mem_map_paddr, sizeof(unsigned long)))
		return -EINVAL;
	bytes = c->nr_pages * sizeof(struct page);
	if (c->mem_map_paddr > U64_MAX - bytes ||
	    !vpl_in_old_memory(c->mem_map_paddr, bytes) ||
	    region_intersects(c->mem_map_paddr, bytes, IORESOURCE_SYSTEM_RAM,
			      IORES_DESC_NONE) != REGION_DISJOINT)
		return -ERANGE;
	return 0;
}

/* Check every chunk of the copy a call scans, in order, before any page is read. */
static int vpl_check_chunks(const struct vmcore_pfn_chunk *c, u32 nr)
{
	u64 prev_end = 0;
	u32 i;
	int ret;

	for (i = 0; i < nr; i++) {
		ret = vpl_check_chunk(&c[i], prev_end);
		if (ret)
			return ret;
		prev_end = c[i].start_pfn + c[i].nr_pages;
	}
	return 0;
}

/*
 * Classify one struct page of the crashed kernel into the first of the
 * requested @classes it belongs to, in the order free, cache, cache with
 * private data, user, hwpoison, offline (the order makedumpfile's dump levels
 * test them in); a compound page is decided by its head for all its pages.
 * @p points into this kernel's copy of the struct pages; @has_next says
 * whether p[1] was copied too.  Nothing
 * here follows a pointer stored in the page (they are the crashed kernel's
 * addresses), and no reference is taken: only the helpers that read the
 * page's own words (or p[1] for a head) are used, after PageTail() ruled out
 * tail pages whose helpers would chase compound_head.
 */
static u32 vpl_classify(struct page *p, u64 pfn, bool has_next, u32 classes, u64 *nr)
{
	unsigned int order = 0;
	bool slab, anon, cache, priv, huge = false;
	unsigned long *flags;

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

	if (VPL_WANT(classes, VMCORE_PFN_FREE) && !slab && PageBuddy(p)) {
		/* The buddy order is kept in page->private (set_buddy_order()). */
		unsigned long bo = page_private(p);

		if (bo >= VPL_NR_ORDERS)
			return VMCORE_PFN_KEEP;
		*nr = 1ULL << bo;
		return VMCORE_PFN_FREE;
	}
#ifdef CONFIG_UNACCEPTED_MEMORY
	/*
	 * Memory not accepted yet is put on a list in blocks of the largest
	 * order, typed on their first page (__free_unaccepted()).  Only the
	 * struct page is read here; the memory itself is never touched, and
	 * scans are refused where it can exist (memory encryption).
	 */
	if (VPL_WANT(classes, VMCORE_PFN_FREE) && PageUnaccepted(p)) {
		*nr = 1ULL << (VPL_NR_ORDERS - 1);
		return VMCORE_PFN_FREE;
	}
#endif

	/*
	 * PG_swapcache and PG_swapbacked are tested as bits, as the dump level
	 * defines them: PageSwapCache() also depends on CONFIG_SWAP, and the
	 * page (not folio) form of the swapbacked helper is gone since 6.x.
	 * folio_flags() rather than &p->flags: the type of page->flags
	 * changed in 6.18.  @p is no tail, so page_folio() returns @p itself.
	 */
	flags = folio_flags(page_folio(p), 0);
	cache = PageLRU(p) || (test_bit(PG_swapcache, flags) &&
			       test_bit(PG_swapbacked, flags));
	anon = !slab && PageAnon(p);
	priv = PagePrivate(p);

	if (VPL_WANT(classes, VMCORE_PFN_CACHE) && cache && !priv && !anon) {
		*nr = 1ULL << order;
		return VMCORE_PFN_CACHE;
	}
	if (VPL_WANT(classes, VMCORE_PFN_CACHE_PRIVATE) && cache && priv && !anon) {
		*nr = 1ULL << order;
		return VMCORE_PFN_CACHE_PRIVATE;
	}
	if (VPL_WANT(classes, VMCORE_PFN_USER) && (anon || huge)) {
		*nr = 1ULL << order;
		return VMCORE_PFN_USER;
	}
	if (VPL_WANT(classes, VMCORE_PFN_HWPOISON) && PageHWPoison(p)) {
		*nr = 1ULL << order;
		return VMCORE_PFN_HWPOISON;
	}
	if (VPL_WANT(classes, VMCORE_PFN_OFFLINE) && !slab && PageOffline(p)) {
		*nr = 1ULL << order;
		return VMCORE_PFN_OFFLINE;
	}
	return VMCORE_PFN_KEEP;
}

struct vpl_state {
	struct vmcore_pfn_run __user *uruns;
	u32 max_runs;
	u32 nr_runs;		/* runs copied to userspace */
	u32 nr_batch;		/* runs collected in batch[] */
	bool have_cur;		/* cur is being extended */
	struct vmcore_pfn_run cur;
	struct vmcore_pfn_run batch[VPL_RUN_BATCH];
	struct page *copy;	/* VPL_COPY_PAGES + 1 struct pages being classified */
	void *copy_buf;
	u64 counts[VMCORE_PFN_NR_CLASSES];
	/* The chunks this call scans, preceded by the one before them. */
	struct vmcore_pfn_chunk chunks[VPL_CALL_CHUNKS + 1];
};

static int vpl_flush(struct vpl_state *s)
{
	if (!s->nr_batch)
		return 0;
	if (copy_to_user(s->uruns + s->nr_runs, s->batch,
			 s->nr_batch * sizeof(s->batch[0])))
		return -EFAULT;
	s->nr_runs += s->nr_batch;
	s->nr_batch = 0;
	return 0;
}

static int vpl_close_cur(struct vpl_state *s)
{
	if (!s->have_cur)
		return 0;
	s->batch[s->nr_batch++] = s->cur;
	s->have_cur = false;
	return s->nr_batch == VPL_RUN_BATCH ? vpl_flush(s) : 0;
}

/*
 * Add a run; merge it with the previous one when contiguous and of the same
 * class.  Returns 1 when the user buffer is full and the run was not added.
 */
static int vpl_add_run(struct vpl_state *s, u64 pfn, u64 nr, u32 class)
{
	int ret;

	if (s->have_cur && s->cur.class == class &&
	    s->cur.pfn + s->cur.count == pfn && s->cur.count <= U32_MAX - nr) {
		s->cur.count += nr;
		return 0;
	}
	if (s->nr_runs + s->nr_batch + s->have_cur >= s->max_runs)
		return 1;
	ret = vpl_close_cur(s);
	if (ret)
		return ret;
	s->cur.pfn = pfn;
	s->cur.count = nr;
	s->cur.class = class;
	s->have_cur = true;
	return 0;
}

/*
 * Classify the page frames from *@ppfn up to @stop of the checked chunk @c.
 * Its struct pages are mapped once and copied VPL_COPY_PAGES at a time, with
 * the one after them for a compound head's page[1]; only the copy is read.
 * Returns 0 once *@ppfn >= @stop, 1 when the run buffer is full or a signal
 * is pending (*@ppfn is where to resume), or a negative errno.
 */
static int vpl_scan_chunk(struct vpl_state *s, const struct vmcore_pfn_chunk *c,
			  u64 *ppfn, u64 stop, u32 classes)
{
	u64 pfn = *ppfn, base = pfn, mapped, batch, ncopy, nr, j;
	struct page *map;
	u32 class;
	int ret = 0;

	mapped = min(stop + 1, c->start_pfn + c->nr_pages) - base;
	map = memremap(c->mem_map_paddr + (base - c->start_pfn) * sizeof(struct page),
		       mapped * sizeof(struct page), MEMREMAP_WB);
	if (!map)
		return -EIO;
	while (pfn < stop) {
		batch = min_t(u64, VPL_COPY_PAGES, stop - pfn);
		ncopy = min(batch + 1, base + mapped - pfn);
		memcpy(s->copy, map + (pfn - base), ncopy * sizeof(struct page));
		for (j = 0; j < batch; j += nr) {
			class = vpl_classify(&s->copy[j], pfn + j, j + 1 < ncopy,
					     classes, &nr);
			if (class != VMCORE_PFN_KEEP) {
				ret = vpl_add_run(s, pfn + j, nr, class);
				if (ret)
					break;
			}
			s->counts[class] += nr;
		}
		pfn += j;
		if (ret)
			break;
		cond_resched();
		if (signal_pending(current)) {
			ret = 1;
			break;
		}
	}
	memunmap(map);
	*ppfn = pfn;
	return ret;
}

/*
 * Scan the checked chunks c[i..nr) from the cursor pfn, covering at most
 * VPL_CALL_PAGES page frames.  Returns the index of the chunk to resume at
 * (nr when all are done) through *@pi, and 0, 1 (stopped early) or an errno.
 */
static int vpl_scan_chunks(struct vpl_state *s, u32 *pi, u32 nr, u64 *ppfn,
			   u32 classes)
{
	const struct vmcore_pfn_chunk *c = s->chunks;
	u64 pfn = *ppfn, end, start, left = VPL_CALL_PAGES;
	u32 i;
	int ret = 0;

	for (i = *pi; i < nr; i++) {
		end = c[i].start_pfn + c[i].nr_pages;
		pfn = max(pfn, c[i].start_pfn);
		if (pfn >= end)
			continue;
		if (!left)
			break;
		start = pfn;
		ret = vpl_scan_chunk(s, &c[i], &pfn, min(end, pfn + left), classes);
		if (ret)
			break;
		left -= min(pfn - start, left);
		if (pfn < end)
			break;
	}
	*pi = i;
	*ppfn = pfn;
	return ret;
}

static long vpl_scan(struct vmcore_pfn_scan __user *ureq)
{
	const struct vmcore_pfn_chunk __user *uchunks;
	struct vmcore_pfn_scan req;
	struct vpl_state *s;
	u32 first, i, nr, usize;
	u64 pfn;
	long ret;

	if (vpl_status)
		return vpl_status;
	if (get_user(usize, &ureq->size))
		return -EFAULT;
	if (usize < VMCORE_PFN_SCAN_SIZE_VER0)
		return -EINVAL;
	if (usize > PAGE_SIZE)
		return -E2BIG;
	ret = copy_struct_from_user(&req, sizeof(req), ureq, usize);
	if (ret)
		return ret;
	/* The copy is the request; write back only what the caller gave. */
	req.size = min_t(u32, usize, sizeof(req));
	if (req.flags || req.classes & ~VMCORE_PFN_CLASSES_ALL ||
	    !req.nr_chunks || !req.max_runs || req.next_chunk > req.nr_chunks ||
	    !IS_ALIGNED(req.chunks, sizeof(u64)) || !IS_ALIGNED(req.runs, sizeof(u64)))
		return -EINVAL;
	if (req.nr_chunks > VMCORE_PFN_MAX_CHUNKS)
		return -E2BIG;
	ret = vpl_check_callbacks();
	if (ret)
		return ret;
	if (signal_pending(current))
		return -ERESTARTSYS;

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return -ENOMEM;
	s->copy_buf = (void *)__get_free_page(GFP_KERNEL);
	if (!s->copy_buf) {
		ret = -ENOMEM;
		goto out;
	}
	s->copy = s->copy_buf + VPL_COPY_OFFSET;
	s->uruns = u64_to_user_ptr(req.runs);
	s->max_runs = req.max_runs;

	/*
	 * The chunks this call may scan, and the one before them for the order
	 * check, are copied once; that copy is checked whole before any page
	 * is read and is the only one used.
	 */
	first = req.next_chunk ? req.next_chunk - 1 : 0;
	nr = min_t(u32, req.nr_chunks - first,
		   VPL_CALL_CHUNKS + (req.next_chunk - first));
	uchunks = u64_to_user_ptr(req.chunks);
	if (copy_from_user(s->chunks, uchunks + first, nr * sizeof(s->chunks[0]))) {
		ret = -EFAULT;
		goto out;
	}
	ret = vpl_check_chunks(s->chunks, nr);
	if (ret)
		goto out;

	i = req.next_chunk - first;
	pfn = req.next_pfn;
	ret = vpl_scan_chunks(s, &i, nr, &pfn, req.classes);
	if (ret < 0)
		goto out;
	ret = vpl_close_cur(s);
	if (!ret)
		ret = vpl_flush(s);
	if (ret)
		goto out;

	req.nr_runs = s->nr_runs;
	req.next_chunk = first + i;
	req.next_pfn = pfn;
	req.done = req.next_chunk >= req.nr_chunks;
	memcpy(req.counts, s->counts, sizeof(req.counts));
	if (copy_to_user(ureq, &req, req.size))
		ret = -EFAULT;
out:
	free_page((unsigned long)s->copy_buf);
	kfree(s);
	return ret;
}

/* Why a scan is refused is in the kernel log; the answer says only the errno. */
static long vpl_info(struct vmcore_pfn_info __user *uinfo)
{
	struct vmcore_pfn_info info = {
		.status = vpl_status ? vpl_status : vpl_check_callbacks(),
		.struct_page_size = sizeof(struct page),
		.classes = VMCORE_PFN_CLASSES_ALL,
		.max_chunks = VMCORE_PFN_MAX_CHUNKS,
		.max_chunk_pages = VMCORE_PFN_MAX_CHUNK_PAGES,
		.nr_old_ranges = vpl_nr_ranges,
	};
	u32 usize;

	if (get_user(usize, &uinfo->size))
		return -EFAULT;
	if (usize < VMCORE_PFN_INFO_SIZE_VER0)
		return -EINVAL;
	info.size = min_t(u32, usize, sizeof(info));
	return copy_to_user(uinfo, &info, info.size) ? -EFAULT : 0;
}

static long vpl_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (VPL_IOC(cmd)) {
	case VPL_IOC(VMCORE_PFN_IOC_INFO):
		return vpl_info((void __user *)arg);
	case VPL_IOC(VMCORE_PFN_IOC_SCAN):
		return vpl_scan((void __user *)arg);
	default:
		return -ENOTTY;
	}
}

static int vpl_open(struct inode *inode, struct file *file)
{
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	return vpl_setup();
}

/* The structures have the same layout for 32-bit callers. */
static const struct proc_ops vpl_proc_ops = {
	.proc_open		= vpl_open,
	.proc_ioctl		= vpl_ioctl,
#ifdef CONFIG_COMPAT
	.proc_compat_ioctl	= compat_ptr_ioctl,
#endif
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
