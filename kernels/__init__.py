"""mixlab's Triton kernels, imported as `mixlab.kernels`.

Importing this package imports triton: for CPU tensors set TRITON_INTERPRET=1 before.
"""
