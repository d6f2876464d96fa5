"""The `calcitrack` command line."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import textwrap

import imaging
from imaging import CalcitrackError, ConfigError, read_radiograph
from imaging.config import AnalysisConfig, load_config
from imaging.regions import RegionError

from . import analyze, followup, phantoms
from .arguments import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, spacing_argument
from .inputs import iter_input_files


def _inspect(args) -> int:
    failed = 0
    files = iter_input_files(args.paths)
    if not files:
        print("no input files found", file=sys.stderr)
        return EXIT_USAGE
    for path in files:
        try:
            film = read_radiograph(path, user_spacing=args.spacing_mm)
        except CalcitrackError as exc:
            failed += 1
            print(f"error  {path}  {type(exc).__name__}: {exc.problem} — {exc.remedy}")
            continue
        meta = film.metadata
        spacing = ("-" if film.spacing_mm is None
                   else "x".join(f"{s:.4g}" for s in film.spacing_mm) + " mm")
        print(f"ok     {path}  {film.shape[0]}x{film.shape[1]}  spacing {spacing} "
              f"({film.spacing_source})  {film.photometric}  "
              f"body part {meta.body_part or '-'}  laterality {meta.laterality or '-'}")
    print(f"{len(files) - failed} read, {failed} failed", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _config(args) -> int:
    print(config_as_toml(load_config(args.config)), end="")
    return EXIT_OK


def config_as_toml(config: AnalysisConfig) -> str:
    """The configuration as a TOML file that `load_config` reads back to the same values.

    Each setting is preceded by its documentation as a comment; settings that differ from
    the defaults say so.

    Examples
    --------
    >>> "[grid]" in config_as_toml(AnalysisConfig())
    True
    """
    lines = [f"# calcitrack {imaging.__version__} analysis configuration "
             f"(config_hash {config.config_hash})", ""]
    _toml_table(lines, config, AnalysisConfig(), "")
    return "\n".join(lines).rstrip("\n") + "\n"


def _toml_table(lines: list[str], values, defaults, name: str) -> None:
    docs = _field_docs(type(values))
    tables = []
    if name:
        lines.append(f"[{name}]")
    for field, value in vars(values).items():
        if hasattr(value, "__dataclass_fields__"):
            tables.append(field)
            continue
        lines.extend(f"# {text}" for text in textwrap.wrap(docs.get(field, ""), 94))
        default = getattr(defaults, field)
        changed = "" if value == default else f"  # default: {_toml_value(default)}"
        lines.append(f"{field} = {_toml_value(value)}{changed}")
    lines.append("")
    for field in tables:
        _toml_table(lines, getattr(values, field), getattr(defaults, field),
                    f"{name}.{field}" if name else field)


def _toml_value(value) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise TypeError(f"no TOML form for {value!r}")


def _field_docs(cls) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (read from its source)."""
    try:
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    except (OSError, TypeError):  # no source available: comments are a courtesy
        return {}
    docs = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `calcitrack` command."""
    parser = argparse.ArgumentParser(
        prog="calcitrack",
        description="Find, measure and track soft-tissue calcification on plain radiographs.")
    parser.add_argument("--version", action="version", version=f"calcitrack {imaging.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect_command = commands.add_parser("inspect",
                                          help="read films and print what was found in them")
    inspect_command.add_argument("paths", nargs="+", help="files or folders (walked recursively)")
    inspect_command.add_argument("--spacing-mm", type=spacing_argument, default=None,
                                 help="pixel spacing in mm (one value or ROW,COL); "
                                      "overrides the file")
    inspect_command.set_defaults(handler=_inspect)

    analyze.register(commands)
    followup.register(commands)

    config = commands.add_parser(
        "config", help="print the analysis parameters as TOML (a file --config accepts)")
    config.add_argument("--show", action="store_true", required=True,
                        help="print the effective configuration with its documentation")
    config.add_argument("--config", metavar="FILE", help="TOML file of overrides to apply")
    config.set_defaults(handler=_config)

    phantoms.register(commands)
    return parser


def main(argv=None) -> int:
    """Run the command line; return the exit code (0 ok, 1 some files failed, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    try:
        return args.handler(args)
    except (ConfigError, RegionError) as exc:
        print(f"calcitrack {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
