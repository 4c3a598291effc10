"""The model side: repository on disk, the registry of served versions, batching, the data plane."""
