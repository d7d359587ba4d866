"""`python -m logstream` is the `logstream` command."""

from logstream.cli.main import main

main()
