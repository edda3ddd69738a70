"""localsnn.rtl: the Amaranth RTL of a spec's network (see docs/rtl.md).

    from localsnn.rtl.top import Network          # the whole chip, a wiring.Component
    from localsnn.rtl.generate import generate    # Verilog + memory images + JSON
"""
