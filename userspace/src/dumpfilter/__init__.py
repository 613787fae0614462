"""dumpfilter: filter Linux kernel crash dumps by page class, from VMCOREINFO alone."""

__version__ = "0.1.0"
