"""`seq2seq-shared serve`: a model behind HTTP (`pip install -e ".[serve]"`).

engine.py translates (one thread, the model loaded once), batcher.py merges the lines of
concurrent requests into decoder batches, app.py is the HTTP surface (FastAPI) and its
errors, page.html the page at `/`, command.py the CLI command. Nothing here imports
FastAPI or Keras until a server is built, so `seq2seq-shared --help` stays instant.
"""
