"""loraxs-edge: the GPU side (prepare factors and ONNX, train R, job worker)."""
