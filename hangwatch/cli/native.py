"""`hangwatch native`: compile the pure stream core with mypyc, remove that build, or show it."""

from __future__ import annotations

import typer

from hangwatch.cli.common import console, fail
from hangwatch.platform import native

native_app = typer.Typer(help="Compiled (mypyc) build of the stream core: build, clean, status.",
                         no_args_is_help=True)


@native_app.command("build")
def build(
    opt_level: int = typer.Option(3, "--opt-level", min=0, max=3, help="C compiler optimisation level"),
    if_needed: bool = typer.Option(False, "--if-needed", help="do nothing when the build matches the sources"),
) -> None:
    """Compile streams/core with mypyc in place (needs a C compiler and the Python headers)."""
    current = native.inspect_core()
    if if_needed and current.mode == "compiled" and current.problem is None:
        console.print("stream core: compiled build is current")
        return
    with console.status(f"compiling {len(native.COMPILED)} modules with mypyc (about 20 s)"):
        try:
            state = native.build(opt_level=opt_level)
        except RuntimeError as e:
            raise fail(str(e)) from e
    console.print(f"compiled: {', '.join(state.compiled)}")


@native_app.command("clean")
def clean() -> None:
    """Remove the compiled modules: the core runs as pure Python again."""
    removed = native.clean()
    console.print(f"removed {len(removed)} files" if removed else "nothing to remove (the core is pure Python)")


@native_app.command("status")
def status() -> None:
    """Say whether the core runs compiled or as pure Python, and whether the build is current."""
    state = native.inspect_core()
    if state.mode == "pure":
        console.print("stream core: pure Python (no compiled modules)")
        return
    console.print(f"stream core: compiled ({len(state.compiled)} of {len(native.COMPILED)} modules)")
    if state.problem:
        raise fail(f"the build is not usable: {state.problem}; "
                   "run `hangwatch native build` or `hangwatch native clean`")


def register(app: typer.Typer) -> None:
    app.add_typer(native_app, name="native")
