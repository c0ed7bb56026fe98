"""Shared command-line plumbing: --config/--workdir/--show_config/--distributed flags,
quiet TensorFlow, one-line errors.

The entry points in experiments/ are flags plus one library call each; this module is what
they share (`run_main` runs a command's main, after `_parse_flags`, the one parser of every
command line: flags only, a positional argument is refused, --help exits 0). Every command
adopts these flags as its own (`flags.adopt_module_key_flags(cli)`), so its --help lists
them beside its own. Exit codes
and the one line each failure ends with are defined in backmix_jax/commands/exit_codes.py:
0 done, 2 a bad input found before work started, 1 a failure after training started, 130
Ctrl-C, 143 SIGTERM outside training; a traceback means a bug.
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402
from ml_collections.config_flags.config_flags import ConfigFileFlagParser  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

# Both light (no JAX): --help and flag errors stay fast.
from backmix_jax.training.errors import ConfigError  # noqa: E402
from backmix_jax.training.workdir import WorkdirError, check_path, trained_config  # noqa: E402
import ml_collections  # noqa: E402

absl_logging.set_verbosity(absl_logging.WARNING)


CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/digits.py (or configs/cifar10.py:<recipe>). "
    "Override any field with --config.<field>=<value> (e.g. --config.num_epochs=3); "
    "--show_config lists every field.", lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.")
SHOW_CONFIG = flags.DEFINE_bool(
    "show_config", False, "Print the resolved config (the file's fields after every "
    "--config.<field>=<value> override) and exit; needs no --workdir.")


def config_listing(config, source: str) -> str:
  """The text --show_config prints: how to override, then every field of `config`."""
  return (f"# resolved config of --config={source}\n"
          "# override any field with --config.<field>=<value>, e.g. --config.num_epochs=3 "
          "or --config.backmix.enabled=False\n" + str(config))


DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Call jax.distributed.initialize(): auto = when a multi-host TPU slice "
    "(TPU_WORKER_HOSTNAMES lists several hosts) or JAX_COORDINATOR_ADDRESS is set.")


def maybe_initialize_distributed():
  """Join the other hosts of a pod slice before any JAX computation (a no-op on one host)."""
  import jax  # after the flags are parsed: --help and flag errors need no JAX
  hosts = [h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
  wanted = DISTRIBUTED.value == "on" or (
      DISTRIBUTED.value == "auto" and (len(hosts) > 1 or "JAX_COORDINATOR_ADDRESS" in os.environ))
  if wanted:
    try:
      jax.distributed.initialize()
    except Exception as e:  # no coordinator, unreachable hosts: a setup problem, not a bug
      reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
      raise ConfigError(f"--distributed={DISTRIBUTED.value}: jax.distributed.initialize() "
                        f"failed: {reason} (set JAX_COORDINATOR_ADDRESS and the process "
                        "ids, run on a multi-host TPU slice, or use --distributed=off on "
                        "one host)") from None


# absl's help flags: each prints what was asked and exits 1 (absl's convention).
HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")


def _asked_for_help(argv) -> bool:
  args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
  return any(a.lstrip("-").partition("=")[0] in HELP_FLAGS for a in args if a.startswith("-"))


def _refuse_arguments(argv, rest) -> None:
  """The commands take flags only: a positional argument would be dropped silently, and
  the usual one is the value of a boolean flag written after a space (absl reads
  `--config.backmix.enabled False` as the flag alone, i.e. True, then 'False')."""
  if len(rest) <= 1:
    return
  extra = rest[1]
  at = argv.index(extra, 1)
  flag = argv[at - 1] if at > 1 else ""
  if flag.startswith("-") and flag != "--" and "=" not in flag:
    msg = (f"unexpected argument {extra!r} after {flag}: write {flag}={extra} (a flag's "
           "value follows '='; a boolean flag alone means True)")
  else:
    msg = (f"unexpected argument {extra!r}: the commands take flags only "
           "(--<name>=<value>; --help lists them)")
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv, *, require_workdir: bool = True, config_from_workdir: bool = False):
  """The one parser of every command's command line: unknown fields, bad override values
  and positional arguments end in one line (exit 2), not a traceback or a silent drop;
  --help and its kin exit 0."""
  try:
    rest = flags.FLAGS(argv)
    for name in flags.FLAGS:
      flag = flags.FLAGS[name]
      if isinstance(flag.parser, ConfigFileFlagParser) and flag.value is not None:
        # ml_collections defers a config file that cannot be read (missing, unreadable)
        # to its first use: use it here, so that it fails with the other flag errors.
        flag.value.keys()
  except Exception as e:  # flags, or the config file's own code (a SyntaxError, ...)
    # A config file that fails to load arrives with its traceback inside the message: keep
    # the last line, which names the problem.
    lines = [line for line in str(e).strip().splitlines() if line.strip()] or [repr(e)]
    msg = lines[-1].strip()
    if len(msg) > 1 and msg[0] == msg[-1] and msg[0] in "'\"":  # KeyError quotes its message
      msg = msg[1:-1]
    if isinstance(e, (AttributeError, KeyError)):
      msg = f"unknown config field {msg}"
    elif not isinstance(e, (flags.Error, TypeError, ValueError)):
      msg = f"cannot load the config file: {msg}"  # the message names the file
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)
  except SystemExit as e:
    if e.code == 1 and _asked_for_help(argv):  # help was printed, as asked: a success
      sys.exit(0)
    raise
  _refuse_arguments(argv, rest)
  missing = [f"--{name}" for name, flag in (("config", CONFIG), ("workdir", WORKDIR))
             if flag.value is None and (name == "config" or (require_workdir
                                                              and not SHOW_CONFIG.value))]
  if config_from_workdir and not SHOW_CONFIG.value:
    missing = [name for name in missing if name != "--config"]
  if missing:
    print(f"error: {' and '.join(missing)} required", file=sys.stderr)
    sys.exit(2)
  if WORKDIR.value is not None:  # '--workdir=' would put checkpoints/ in the current dir
    try:
      check_path(WORKDIR.value)
    except WorkdirError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  return rest


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
  return f"warning: {message}\n"


def config_or_recorded():
  """--config (with its overrides), or else the config the --workdir's run was trained with
  (its config.json, or history.jsonl's newest entry after a resume=override): what a reader
  of a trained run (evaluate, visualize) uses when no --config is given."""
  if CONFIG.value is not None:
    return CONFIG.value
  saved, _ = trained_config(WORKDIR.value)
  if saved is None:
    raise WorkdirError(f"{WORKDIR.value} records no training config (config.json); give the "
                       "one it was trained with: --config configs/<x>.py plus its overrides")
  return ml_collections.ConfigDict(saved)


def run_main(main, *, require_workdir: bool = True, config_from_workdir: bool = False):
  """absl app.run with bad flags and user errors (bad config, data, checkpoint) in one line.

  config_from_workdir: --config may be left out (the command reads a trained run and takes
  its recorded config through `config_or_recorded`)."""
  from absl import app

  def wrapped(argv):
    if SHOW_CONFIG.value:
      source = config_flags.get_config_filename(flags.FLAGS["config"])
      try:
        print(config_listing(CONFIG.value, source), flush=True)
      except BrokenPipeError:  # `--show_config | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      return
    try:
      # Imported once the flags are parsed: --help and flag errors need no JAX.
      from backmix_jax.commands.exit_codes import (drop_closed_event_loop,
                                                   not_a_reported_os_error, raise_terminated)
      # SIGTERM ends in one line like any other stop (training installs its own handler,
      # which saves a checkpoint first).
      signal.signal(signal.SIGTERM, raise_terminated)
      # A warning is one line, as every other message of the commands (Python's shows the
      # file, line number and source line of the warnings.warn call).
      warnings.formatwarning = _one_line_warning
      # Orbax logs a failed write through absl, and asyncio the futures of its writes that
      # failed ("exception was never retrieved"): both repeat what the one line says.
      for logger in (absl_logging.get_absl_logger(), logging.getLogger("asyncio")):
        logger.addFilter(not_a_reported_os_error)
      sys.unraisablehook = drop_closed_event_loop(sys.unraisablehook)
      maybe_initialize_distributed()
      main(argv)
    except BaseException as e:  # KeyboardInterrupt included: Ctrl-C ends in one line too
      from backmix_jax.commands.exit_codes import exit_status  # loaded above, unless that failed
      status = None if isinstance(e, SystemExit) else exit_status(e)
      if status is None:
        raise
      code, line = status
      print(line, file=sys.stdout if code in (0, 130) and not line.startswith("error:")
            else sys.stderr, flush=True)
      sys.exit(code)

  app.run(wrapped, flags_parser=functools.partial(_parse_flags, require_workdir=require_workdir,
                                                  config_from_workdir=config_from_workdir))
