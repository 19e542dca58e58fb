"""The analysis subcommands on a parser of their own, as pixcap.cli registers them."""
import argparse

from pixcap.analysis.cli import register


def run_analysis(capsys, *argv) -> tuple:
    """(exit code, stdout, stderr) of one analysis subcommand."""
    parser = argparse.ArgumentParser(prog="pixcap")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err
