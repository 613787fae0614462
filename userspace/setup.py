"""The one C extension: batches of pages read, zero-tested and compressed
(src/dumpfilter/_pagecodec.c).

Everything else about the package is in pyproject.toml.  It links the same libraries
makedumpfile links for its codecs (Debian: liblzo2-dev libsnappy-dev libzstd-dev zlib1g-dev).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dumpfilter._pagecodec",
            ["src/dumpfilter/_pagecodec.c"],
            libraries=["lzo2", "snappy", "zstd", "z"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        )
    ]
)
