"""localsnn.sim: cocotb + Verilator co-simulation of the RTL against the golden model (planned)."""
