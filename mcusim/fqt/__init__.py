"""Fully quantized training: quantization maths and the numpy twin of the C kernels."""
