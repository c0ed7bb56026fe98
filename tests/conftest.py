"""Test session setup: 4 virtual CPU devices, a quiet TensorFlow, a shared compilation cache.

XLA reads its flags once, when JAX first initialises a backend, so they are set here,
before any test module imports jax. The persistent compilation cache is set through the
environment so that the subprocesses tests start (CLI runs, the 2-process run) share it:
most tests train the same small programs, which are then loaded instead of compiled.
"""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="backmix_xla_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
