"""The commands of `seq2seq-shared`, by what they work on; `cli.py` gathers them."""
