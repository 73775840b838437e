"""``python -m digitcli``."""

from digitcli.cli import main

if __name__ == "__main__":
    main()
