"""NPU verification parts: register-map driver, cocotb GEMM testbench, golden model."""
