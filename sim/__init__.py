"""localsnn.sim: co-simulation of the RTL against the golden model (see docs/cosim.md).

    from localsnn.sim.cosim import cosimulate     # cocotb + Verilator, compared every step
    from localsnn.sim.bench import bench_rtl      # cycles per time step against the bound
"""
