"""`python -m cli ...`: the same as `python starter.py ...` and `vqa ...`."""

from cli.main import main

main()
