"""The ``rspose`` command's dispatcher: ``synth``, ``compare``, ``infer`` and ``export`` (table :data:`SUBCOMMANDS`), anything else to the
LightningCLI of :mod:`rspose.cli` (fit, validate, test, predict). It lives apart from :mod:`rspose.cli` so that
the tools it dispatches to (e.g. :mod:`rspose.compare`, which builds runs with :func:`rspose.cli.run_lightning_cli`)
import the CLI without a cycle. User errors are reported by the rule of :mod:`rspose.errors`."""

from __future__ import annotations

import sys

from rspose.errors import debug_enabled, format_user_error, user_error_message

#: exit code after SIGTERM (128 + 15, what a shell reports for a process ended by the signal).
SIGTERM_EXIT_CODE = 143


def main(argv: list[str] | None = None) -> int:
    """The ``rspose`` command, and its one error boundary: a user error (see :mod:`rspose.errors`) prints one line
    ``rspose: error: ...`` and returns 2 (the traceback only with ``RSPOSE_DEBUG=1``); anything else keeps its
    traceback. SIGTERM during ``fit`` saves a resumable checkpoint (:class:`rspose.callbacks.SigtermCheckpoint`),
    prints one line naming it and returns 143."""
    try:
        return _dispatch(argv)
    except SystemExit as exc:
        if type(exc).__name__ != "SIGTERMException":  # Lightning's, raised by its loops after SIGTERM
            raise
        saved = getattr(exc, "rspose_checkpoint", None)
        sys.stderr.write(
            "rspose: terminated by SIGTERM: "
            + (f"saved a resumable checkpoint {saved} (resume with --ckpt_path {saved})\n" if saved
               else "no checkpoint was saved\n")
        )
        return SIGTERM_EXIT_CODE
    except Exception as exc:
        message = user_error_message(exc)
        if message is None or debug_enabled():
            raise
        sys.stderr.write(format_user_error(message))
        return 2


def _run_lightning(argv: list[str] | None) -> int:
    from rspose.cli import RSPoseCLI, run_lightning_cli

    RSPoseCLI.raise_parse_errors = True
    try:
        run_lightning_cli(argv)
    finally:
        RSPoseCLI.raise_parse_errors = False
    return 0


def _synth(argv: list[str]) -> int:
    from rspose.data.synthetic import main as synth_main

    return synth_main(argv)


def _compare(argv: list[str]) -> int:
    from rspose.compare import main as compare_main

    return compare_main(argv)


def _infer(argv: list[str]) -> int:
    from rspose.infer import main as infer_main

    return infer_main(argv)


def _export(argv: list[str]) -> int:
    from rspose.export import main as export_main

    return export_main(argv)


#: subcommand -> handler(argv without the subcommand); anything else goes to the LightningCLI.
SUBCOMMANDS = {"synth": _synth, "compare": _compare, "infer": _infer, "export": _export}


def _dispatch(argv: list[str] | None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if words and words[0] in SUBCOMMANDS:
        return SUBCOMMANDS[words[0]](words[1:])
    return _run_lightning(None if argv is None else words)  # None: LightningCLI reads sys.argv itself


if __name__ == "__main__":
    raise SystemExit(main())
