/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * /proc/vmcore_pfn_lists: the capture kernel classifies the crashed
 * kernel's struct pages on behalf of a dump filter.
 *
 * See Documentation/admin-guide/kdump/vmcore_pfn_lists.rst.
 */
#ifndef _UAPI_LINUX_VMCORE_PFN_LISTS_H
#define _UAPI_LINUX_VMCORE_PFN_LISTS_H

#include <linux/ioctl.h>
#include <linux/types.h>

/*
 * Page classes (stable numbers).  A scan reports the classes whose bit
 * (1 << class) the caller requests; what to exclude at which dump level is
 * the caller's decision.
 */
#define VMCORE_PFN_KEEP			0	/* none of the requested classes */
#define VMCORE_PFN_CACHE		1	/* page cache, no private data */
#define VMCORE_PFN_CACHE_PRIVATE	2	/* page cache with private data */
#define VMCORE_PFN_USER			3	/* anonymous or hugetlbfs */
#define VMCORE_PFN_FREE			4	/* free: buddy allocator, unaccepted */
#define VMCORE_PFN_HWPOISON		5	/* hardware poisoned */
#define VMCORE_PFN_OFFLINE		6	/* logically offline */
#define VMCORE_PFN_NR_CLASSES		8
#define VMCORE_PFN_CLASSES_ALL		0x7e	/* classes 1 to 6 */

/* Limits of one request. */
#define VMCORE_PFN_MAX_CHUNKS		(1U << 20)
#define VMCORE_PFN_MAX_CHUNK_PAGES	(1U << 18)

/*
 * One chunk of the crashed kernel's mem_map: the struct pages of
 * [start_pfn, start_pfn + nr_pages) lie at physical address
 * mem_map_paddr, contiguously.  Chunks are sorted by start_pfn and do not
 * overlap.
 */
struct vmcore_pfn_chunk {
	__u64 start_pfn;
	__u64 nr_pages;
	__u64 mem_map_paddr;
};

/* A run of page frames of one requested class. */
struct vmcore_pfn_run {
	__u64 pfn;
	__u32 count;
	__u32 class;
};

/*
 * Both structures grow at their end.  The caller sets size to the size of
 * the structure it knows: a kernel that knows more treats the missing
 * fields as zero, a kernel that knows less requires the fields it does not
 * know to be zero (E2BIG otherwise) and writes back only as many bytes as
 * the caller gave.
 */

/*
 * VMCORE_PFN_IOC_SCAN request.  All state lives in this structure: start
 * with next_chunk = next_pfn = 0 and call again with the values the kernel
 * wrote back until done is 1.
 */
struct vmcore_pfn_scan {
	__u32 size;		/* in: sizeof(struct vmcore_pfn_scan) */
	__u32 flags;		/* in: must be 0 */
	__u32 classes;		/* in: 1 << VMCORE_PFN_* of each class to report */
	__u32 nr_chunks;	/* in: entries at chunks */
	__u64 chunks;		/* in: struct vmcore_pfn_chunk array */
	__u64 runs;		/* in: struct vmcore_pfn_run array */
	__u32 max_runs;		/* in: entries available at runs */
	__u32 nr_runs;		/* out: entries written */
	__u32 next_chunk;	/* in/out: resume cursor, chunk index */
	__u32 done;		/* out: 1 when every chunk has been scanned */
	__u64 next_pfn;		/* in/out: resume cursor, page frame */
	__u64 counts[VMCORE_PFN_NR_CLASSES];	/* out: pages per class */
};

#define VMCORE_PFN_SCAN_SIZE_VER0	120

/* VMCORE_PFN_IOC_INFO answer: whether a scan is possible, and the limits. */
struct vmcore_pfn_info {
	__u32 size;		/* in: sizeof(struct vmcore_pfn_info); out: bytes written */
	__s32 status;		/* 0, or the negative errno a scan returns */
	__u32 struct_page_size;	/* sizeof(struct page) of this kernel */
	__u32 classes;		/* VMCORE_PFN_CLASSES_ALL */
	__u32 max_chunks;	/* VMCORE_PFN_MAX_CHUNKS */
	__u32 max_chunk_pages;	/* VMCORE_PFN_MAX_CHUNK_PAGES */
	__u32 nr_old_ranges;	/* merged old-memory ranges (PT_LOADs) */
};

#define VMCORE_PFN_INFO_SIZE_VER0	28

/* The kernel matches these numbers without their size: the size field counts. */
#define VMCORE_PFN_IOC_MAGIC	0xB9
#define VMCORE_PFN_IOC_INFO	_IOWR(VMCORE_PFN_IOC_MAGIC, 1, struct vmcore_pfn_info)
#define VMCORE_PFN_IOC_SCAN	_IOWR(VMCORE_PFN_IOC_MAGIC, 2, struct vmcore_pfn_scan)

#endif /* _UAPI_LINUX_VMCORE_PFN_LISTS_H */
