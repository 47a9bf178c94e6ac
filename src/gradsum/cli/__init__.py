"""The `gradsum` command-line tool (Typer).

Each command lives in its own module of this package and is registered here; the library
never imports this package.
"""
from __future__ import annotations

import typer

app = typer.Typer(
    name="gradsum",
    help="Explain, in numbers, what image models look at.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help text: data specs like roads:100:task=... must not become emoji
)


def _version(value: bool) -> None:
    if value:
        from gradsum import __version__

        typer.echo(f"gradsum {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                          help="Print gradsum's version and exit.")) -> None:
    """Explain, in numbers, what image models look at."""
    import warnings

    _zero_maps_told.clear()
    warnings.showwarning = _one_line_warning


_zero_maps_told: set[str] = set()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    """Warnings of a command as one line on stderr: 'gradsum: warning: ...'. An all-zero map
    is told once per method (a dataset job would otherwise repeat it for every batch)."""
    from gradsum.methods import ZeroMapWarning

    if isinstance(message, ZeroMapWarning):
        if message.method in _zero_maps_told:
            return
        _zero_maps_told.add(message.method)
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    typer.echo(f"gradsum: warning: {text}", err=True)


def _register() -> None:
    """Import every command module of this package (cli/<name>.py, not starting with '_')
    and let it add its commands with its `register(app)` function."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(app)


_register()


def main() -> None:
    """Console-script entry point. A command-line job keeps freed memory for its next batches
    (fewer page faults; see gradsum.core.memory)."""
    from gradsum.core.memory import keep_freed_memory

    keep_freed_memory()
    app()
