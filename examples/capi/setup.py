"""The C extension of tr_capi_example: only the headers of tokio_runtime, and zlib.

Everything else is in pyproject.toml.  The include folder is asked of the
*installed* tokio_runtime at build time, so the extension is compiled against
the headers (and TR_CAPI_VERSION) of the package it will run with.
"""

from setuptools import Extension, setup

import tokio_runtime

setup(
    ext_modules=[
        Extension(
            "tr_capi_example._ext",
            ["src/tr_capi_example/_ext.c"],
            include_dirs=[tokio_runtime.get_include()],
            libraries=["z"],  # zlib; tokio_runtime itself is reached through a capsule
            extra_compile_args=["-std=c11", "-Wall", "-Wextra"],
        )
    ]
)
