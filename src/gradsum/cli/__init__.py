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
