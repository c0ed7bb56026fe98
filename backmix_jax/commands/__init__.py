"""The logic behind the command-line commands (`experiments/*.py` parse flags and call one of
these): evaluate a checkpoint (`evaluate`), trials (`trials`), the mixing picture
(`visualize`), the speed benchmark (`benchmark`), the fore-/background diagnostic's example
picture (`fgbg_examples`); shared flags (`cli`) and exit codes (`exit_codes`)."""
