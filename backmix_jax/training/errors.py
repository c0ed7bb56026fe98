"""ConfigError, in a module of its own: validate.py reads the allowed values of the modules
that own them (step.py among them), and those modules raise ConfigError too, so it cannot
live in validate.py without an import cycle. `validate.ConfigError` is this class."""


class ConfigError(ValueError):
  """The config cannot describe a valid run."""
