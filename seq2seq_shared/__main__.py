"""`python -m seq2seq_shared`: the command line."""

from .cli import main

main()
