"""localsnn.synth: FPGA board builds with the YoWASP toolchain (planned)."""
