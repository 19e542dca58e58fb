"""Running an analysis subcommand as `pixcap` runs it: the real parser and its exit codes."""
from pixcap.cli.main import main


def run_analysis(capsys, *argv) -> tuple:
    """(exit code, stdout, stderr) of one analysis subcommand."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
