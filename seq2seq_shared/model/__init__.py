"""The network: the shared LSTM and its kernels, attention, the role signal, the Seq2Seq model, its parameter count."""
