"""Generated gRPC code of proto/medrefine/v1/refine.proto; regenerate with proto/generate.py."""
