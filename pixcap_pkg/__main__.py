"""`python -m pixcap`: the same command as `pixcap`."""
import sys

from pixcap.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
