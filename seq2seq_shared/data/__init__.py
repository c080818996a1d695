"""Text in, ids and batches out: files, the pre-flight check, SentencePiece, encoded and prepared corpora."""
