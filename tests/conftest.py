"""Test session setup: 4 virtual CPU devices and a quiet TensorFlow.

XLA reads its flags once, when JAX first initialises a backend, so they are set here,
before any test module imports jax.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
